// liblatentwatch.so: the C interface (LatentWatchCAPI) linked as a self-contained shared library. This target only
// carries the link settings (Package.swift): the Swift runtime linked in statically, and the version script
// (latentwatch.map) that exports the lw_ functions and nothing else. Its product is the library hosts load.
@_exported import LatentWatchCAPI
