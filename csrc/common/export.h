// RRAE_FAST_CORE_API marks what a numerics core exports from its shared library: the entry
// points its extension modules call. Everything else in a core is built with hidden visibility,
// so calls inside it stay direct and its internals stay out of the process's symbol table.
#ifndef RRAE_FAST_COMMON_EXPORT_H_
#define RRAE_FAST_COMMON_EXPORT_H_

#define RRAE_FAST_CORE_API __attribute__((visibility("default")))

#endif  // RRAE_FAST_COMMON_EXPORT_H_
