/* Definitions every public ferry header shares. */
#ifndef FERRY_COMMON_H
#define FERRY_COMMON_H

/* libferry is built with hidden visibility; only FERRY_API symbols are exported. */
#define FERRY_API __attribute__((visibility("default")))

#endif
