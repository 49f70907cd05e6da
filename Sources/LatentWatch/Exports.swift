// The numerics module's one public type, ElementType, is part of the SDK's API (tensor element types, parameter
// precision); re-exported so hosts need only `import LatentWatch`. Everything else in LatentWatchNumerics has
// package access.
@_exported import LatentWatchNumerics
