public import CLatentWatch
import LatentWatch

/// The objects behind the C interface's opaque handles. A handle is never a pointer to memory: it is a number
/// (a never-reused serial shifted left, with the object's kind in the low bits) that the registry maps to the
/// object. A freed, foreign or wrongly typed handle is therefore found missing and refused, never dereferenced.
/// Lookups hold a mutex for a dictionary lookup and a retain (no allocation); the object they return lives
/// until the caller's reference is released, so freeing a handle while another thread uses it is safe.
final class HandleRegistry: Sendable {
    enum Kind: UInt {
        case model = 1
        case monitor = 2
        case statistics = 3

        var name: String {
            switch self {
            case .model: "lw_model"
            case .monitor: "lw_monitor"
            case .statistics: "lw_statistics"
            }
        }
    }

    private struct Table {
        var next: UInt = 1
        var objects: [UInt: AnyObject] = [:]
    }

    private let table = LockedValue(Table())

    static let shared = HandleRegistry()

    /// Registers an object and returns its new handle.
    func insert(_ object: AnyObject, kind: Kind) -> OpaquePointer {
        let key = table.withLock { t -> UInt in
            let key = (t.next << 4) | kind.rawValue
            t.next += 1
            t.objects[key] = object
            return key
        }
        return OpaquePointer(bitPattern: key)!
    }

    /// The object behind a handle of the given kind.
    func lookup<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type, kind: Kind) throws(CallError) -> T {
        guard let handle else { throw CallError(LW_ERR_INVALID_HANDLE, "the \(kind.name) handle is NULL") }
        let key = UInt(bitPattern: handle)
        let object = table.withLock { $0.objects[key] }
        guard let object, key & 0xF == kind.rawValue, let typed = object as? T else {
            throw CallError(
                LW_ERR_INVALID_HANDLE,
                "not a live \(kind.name) handle: it was freed, is of another kind, or did not come from this library"
            )
        }
        return typed
    }

    /// Removes a handle; returns its object, or nil when it was not live.
    func remove<T: AnyObject>(_ handle: OpaquePointer, as type: T.Type, kind: Kind) throws(CallError) -> T {
        let key = UInt(bitPattern: handle)
        let object = table.withLock { t -> AnyObject? in
            guard key & 0xF == kind.rawValue, t.objects[key] is T else { return nil }
            return t.objects.removeValue(forKey: key)
        }
        guard let typed = object as? T else {
            throw CallError(
                LW_ERR_INVALID_HANDLE,
                "not a live \(kind.name) handle: it was already freed, is of another kind, or did not come from this library"
            )
        }
        return typed
    }

    /// The registry key of a handle (for per-thread caches).
    static func key(_ handle: OpaquePointer) -> UInt { UInt(bitPattern: handle) }
}
