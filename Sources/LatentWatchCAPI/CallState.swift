public import CLatentWatch
import LatentWatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed call's status and message, thrown inside the C functions and turned into a status code at the
/// boundary by ``CallState/run(_:)``.
struct CallError: Error {
    let status: Int32
    let message: String

    init(_ status: Int32, _ message: String) {
        self.status = status
        self.message = message
    }

    /// The status a C caller sees for an SDK error, with the SDK's full description (message, code, remedy).
    init(_ e: LatentWatchError) {
        status = Self.status(of: e.code)
        message = e.description
    }

    static func status(of code: LatentWatchError.Code) -> Int32 {
        switch code {
        case .io: return LW_ERR_IO
        case .unsupportedVersion, .unsupportedFeature: return LW_ERR_UNSUPPORTED
        case .shapeMismatch, .layerCountMismatch: return LW_ERR_SHAPE_MISMATCH
        case .nonFinite, .invalidActivation: return LW_ERR_NON_FINITE
        case .invalidOutputs: return LW_ERR_INVALID_ARGUMENT
        case .queueFull: return LW_ERR_QUEUE_FULL
        case .shutDown: return LW_ERR_SHUT_DOWN
        case .notInBackgroundMode: return LW_ERR_WRONG_STATE
        case .invalidConfiguration: return LW_ERR_INVALID_CONFIGURATION
        case .fitFailed: return LW_ERR_FIT_FAILED
        case .truncated, .trailingBytes, .notAModelFile, .checksumMismatch, .implausibleSize, .sectionOutOfBounds,
            .decompressionFailed, .malformedMetadata, .inconsistentModel, .malformedFile:
            return LW_ERR_MALFORMED_FILE
        default: return LW_ERR_INTERNAL
        }
    }

    static func null(_ name: String) -> CallError {
        CallError(LW_ERR_INVALID_ARGUMENT, "\(name) is NULL")
    }
}

/// What the C interface keeps per thread: the last call's status and message, scoring workspaces per model,
/// assessment buffers per monitor, and whether the thread is inside an alert callback. Reached through a
/// pthread key, so a thread allocates it once and then never again for the same models and monitors.
final class CallState {
    var status: Int32 = LW_OK
    /// NUL-terminated message of the last failure ("" after a success).
    var message: UnsafeMutablePointer<CChar>
    var messageCapacity: Int
    /// Scoring workspaces by model handle.
    var workspaces: [UInt: ScoringWorkspace] = [:]
    /// Assessment buffers by monitor handle.
    var scratch: [UInt: MonitorScratch] = [:]
    /// Set while this thread runs an alert callback.
    var inCallback = false

    init() {
        messageCapacity = 256
        message = .allocate(capacity: messageCapacity)
        message[0] = 0
    }

    deinit { message.deallocate() }

    func succeed() {
        if status != LW_OK {
            status = LW_OK
            message[0] = 0
        }
    }

    func fail(_ e: CallError) {
        status = e.status
        let bytes = Array(e.message.utf8)
        if bytes.count + 1 > messageCapacity {
            message.deallocate()
            messageCapacity = bytes.count + 1
            message = .allocate(capacity: messageCapacity)
        }
        for (i, b) in bytes.enumerated() { message[i] = CChar(bitPattern: b) }
        message[bytes.count] = 0
    }

    /// Caches are bounded: a thread that meets many short-lived models or monitors drops its cache now and then.
    func trimCaches() {
        if workspaces.count > 64 { workspaces.removeAll() }
        if scratch.count > 64 { scratch.removeAll() }
    }

    // MARK: The per-thread instance

    nonisolated(unsafe) static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { raw in
            if let raw { Unmanaged<CallState>.fromOpaque(raw).release() }
        }
        return k
    }()

    /// This thread's state, created on first use.
    static var current: CallState {
        if let raw = pthread_getspecific(key) {
            return Unmanaged<CallState>.fromOpaque(raw).takeUnretainedValue()
        }
        let s = CallState()
        pthread_setspecific(key, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// Runs the body of a C function: records its status and message for `lw_last_error`, and turns every error
    /// into a status code. Nothing thrown crosses the boundary.
    static func run(_ body: () throws(CallError) -> Void) -> Int32 {
        let state = current
        do throws(CallError) {
            try body()
            state.succeed()
            return LW_OK
        } catch {
            state.fail(error)
            return error.status
        }
    }
}

/// Swift strings from C arguments.
extension String {
    /// A required C string argument.
    static func argument(_ p: UnsafePointer<CChar>?, _ name: String) throws(CallError) -> String {
        guard let p else { throw .null(name) }
        return String(cString: p)
    }
}

/// Runs an SDK call, turning its error into the C interface's.
func sdk<T>(_ body: () throws(LatentWatchError) -> T) throws(CallError) -> T {
    do throws(LatentWatchError) { return try body() } catch { throw CallError(error) }
}

/// Runs an SDK call that throws untyped errors (fitting, merging): a ``LatentWatchError`` keeps its status, anything
/// else is a failed fit described by `what`.
func fitting<T>(_ what: String, _ body: () throws -> T) throws(CallError) -> T {
    do { return try body() } catch let e as LatentWatchError { throw CallError(e) } catch {
        throw CallError(LW_ERR_FIT_FAILED, "\(what) failed: \(error)")
    }
}
