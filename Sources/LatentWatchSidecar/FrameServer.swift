import Foundation
import LatentWatch
import LatentWatchWire
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// Listens on the Unix socket and the loopback TCP port and runs one ``FrameHandler`` per connection. A
/// `Service`: graceful shutdown stops accepting and reading, waits until every read frame is handled,
/// sends each connection its final ACK and closes it.
final class FrameServer: Service, Sendable {
    let context: ServerContext
    let group: any EventLoopGroup
    let logger: Logger
    let onListening: @Sendable (String) -> Void

    init(
        context: ServerContext,
        group: any EventLoopGroup,
        logger: Logger,
        onListening: @escaping @Sendable (String) -> Void
    ) {
        self.context = context
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    func bootstrap() -> ServerBootstrap {
        let context = self.context
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelOption(
                .recvAllocator,
                value: AdaptiveRecvByteBufferAllocator(minimum: 4096, initial: 65_536, maximum: 1 << 20)
            )
            .childChannelInitializer { channel in
                let connection = Connection(channel: channel, context: context)
                guard context.register(connection) else {
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in context.unregister(connection) }
                // A connection that never completes the handshake must not hold a slot forever.
                let timeout = context.configuration.handshakeTimeoutSeconds
                let check = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
                    guard !connection.handshaken.load(ordering: .relaxed) else { return }
                    context.metrics.protocolErrors[.handshakeRequired]?.increment()
                    connection.sendAndClose(
                        WireError(.handshakeRequired, "no HELLO within \(timeout) s (--handshake-timeout)").frame()
                    )
                }
                channel.closeFuture.whenComplete { _ in check.cancel() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameHandler(connection: connection, context: context))
                    )
                }
            }
    }

    func run() async throws {
        var channels: [Channel] = []
        if let path = context.configuration.socketPath {
            try Self.removeStaleSocket(path)
            let old = umask(0o177)
            defer { umask(old) }
            let ch = try await bootstrap().bind(unixDomainSocketPath: path).get()
            chmod(path, 0o600)
            channels.append(ch)
            onListening("unix:\(path)")
        }
        if let tcp = context.configuration.tcp {
            let ch = try await bootstrap().childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: tcp.host, port: tcp.port).get()
            channels.append(ch)
            onListening("tcp:\(tcp.host):\(ch.localAddress?.port ?? tcp.port)")
        }
        let listeners = channels
        await withGracefulShutdownHandler {
            for ch in listeners { try? await ch.closeFuture.get() }
        } onGracefulShutdown: {
            for ch in listeners { ch.close(promise: nil) }
        }
        await drain()
        if let path = context.configuration.socketPath { unlink(path) }
    }

    /// Stops reading, waits until every frame read is handled, then sends the final ACKs and closes.
    func drain() async {
        context.draining.store(true, ordering: .releasing)
        let open = context.connections.withLockedValue { Array($0.values) }
        for c in open { try? await c.channel.setOption(ChannelOptions.autoRead, value: false).get() }
        // Frames already in a decoder's buffer were decoded on read; what the queue holds is the rest.
        while !context.queue.isIdle { try? await Task.sleep(for: .milliseconds(2)) }
        let still = context.connections.withLockedValue { Array($0.values) }
        for c in still { try? await c.finish().get() }
        logger.info("drained", metadata: ["connections": "\(still.count)"])
    }

    /// Removes a socket file left by a server that is gone; refuses a live one or a non-socket file.
    static func removeStaleSocket(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw LatentWatchError(
                .invalidConfiguration,
                "\(path) exists and is not a socket; remove it or choose another --socket"
            )
        }
        switch Result(catching: { () throws(LocalSocket.Failure) in try LocalSocket.connect(unixPath: path) }) {
        case .success(let fd):
            close(fd)
            throw LatentWatchError(
                .invalidConfiguration,
                "another server is listening on \(path); stop it or choose another --socket"
            )
        case .failure(let f) where f.code == ENAMETOOLONG:
            throw LatentWatchError(
                .invalidConfiguration,
                "socket path \(path) is longer than the 107 bytes a Unix socket path may have"
            )
        case .failure:
            break
        }
        unlink(path)
    }
}
