#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif

/// A value behind a pthread mutex, reached only through ``withLock(_:)``.
///
/// Why not `Synchronization.Mutex`: on Linux it waits on futexes inside the uninstrumented standard library,
/// so the thread sanitizer cannot see its happens-before edges and reports races on every protected
/// access. pthread mutexes are intercepted by the sanitizer, which keeps `swift test --sanitize=thread`
/// meaningful. Keep critical sections short; nothing here is held while scoring.
package final class LockedValue<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// Wraps a value.
    package init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inlinable
    package func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure)
        -> Result
    {
        lock()
        defer { unlock() }
        return try body(&_value)
    }

    @usableFromInline
    var _value: Value {
        _read { yield value }
        _modify { yield &value }
    }

    @usableFromInline
    func lock() { pthread_mutex_lock(mutex) }

    @usableFromInline
    func unlock() { pthread_mutex_unlock(mutex) }
}
