/* mapfile.h - read-only whole-file mmap (weights, tokenizer, configs). */
#ifndef G4_MAPFILE_H
#define G4_MAPFILE_H

#include <stddef.h>
#include "g4.h"

typedef struct mapfile {
    const unsigned char *data;  /* NULL for an empty file */
    size_t size;
    char *path;                 /* owned copy */
} mapfile;

g4_status mapfile_open(mapfile *m, const char *path, g4_error *err);
void mapfile_close(mapfile *m);
/* Read a whole (small) file into a malloc'd NUL-terminated buffer. */
g4_status read_file_all(const char *path, size_t max_size, char **out, size_t *len, g4_error *err);

#endif
