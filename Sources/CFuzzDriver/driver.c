#include "CFuzzDriver.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <dirent.h>
#include <string.h>

typedef int (*lw_fuzz_callback)(const uint8_t *data, size_t size);

/* libFuzzer's entry, present when the executable is linked with -sanitize=fuzzer. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, lw_fuzz_callback callback) __attribute__((weak));

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "latentwatch-fuzz: cannot open %s\n", path);
        return 2;
    }
    size_t capacity = 1 << 16, size = 0;
    uint8_t *buffer = malloc(capacity);
    size_t n;
    while (buffer && (n = fread(buffer + size, 1, capacity - size, f)) > 0) {
        size += n;
        if (size == capacity) {
            capacity *= 2;
            uint8_t *grown = realloc(buffer, capacity);
            if (!grown) { free(buffer); buffer = NULL; }
            else buffer = grown;
        }
    }
    fclose(f);
    if (!buffer) return 2;
    LLVMFuzzerTestOneInput(buffer, size);
    free(buffer);
    return 0;
}

static int replay(const char *path, int *count) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "latentwatch-fuzz: no such file %s\n", path);
        return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
        *count += 1;
        return replay_file(path);
    }
    DIR *d = opendir(path);
    if (!d) return 2;
    struct dirent *e;
    int status = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (replay(child, count) != 0) status = 2;
    }
    closedir(d);
    return status;
}

int lw_fuzz_run(int argc, char **argv) {
    if (LLVMFuzzerRunDriver) return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput);
    int status = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue; /* libFuzzer flags mean nothing to a replay */
        if (replay(argv[i], &count) != 0) status = 2;
    }
    printf("replayed %d input(s) without a crash\n", count);
    return status;
}
