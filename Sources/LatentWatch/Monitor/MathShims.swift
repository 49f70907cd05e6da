#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

@usableFromInline func _tan(_ x: Double) -> Double { tan(x) }
@usableFromInline func _atan(_ x: Double) -> Double { atan(x) }
@usableFromInline func _log(_ x: Double) -> Double { log(x) }
