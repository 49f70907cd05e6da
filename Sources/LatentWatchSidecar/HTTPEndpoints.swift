import Foundation
import Hummingbird
import LatentWatch
import LatentWatchWire
import Prometheus

/// Requires `Authorization: Bearer <token>` on every route but `/healthz`.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == "/healthz" { return try await next(request, context) }
        let given = request.headers[.authorization] ?? ""
        guard constantTimeEqual(given, "Bearer \(token)") else {
            throw HTTPError(.unauthorized, message: "send Authorization: Bearer <token>")
        }
        return try await next(request, context)
    }
}

/// Waits for the worker's answer to one HTTP observation.
final class HTTPWaiter: BatchOwner, Sendable {
    let continuation: CheckedContinuation<[WireAssessment]?, Never>
    init(_ c: CheckedContinuation<[WireAssessment]?, Never>) { continuation = c }
    func handled(_ batch: IngestBatch, results: [WireAssessment]) { continuation.resume(returning: results) }
}

/// JSON body of `POST /v1/observe`.
struct ObserveRequest: Decodable {
    var requestID: String?
    var layers: [String: [Float]]
    /// A regression host's prediction of the input (servers of a regression model).
    var hostPrediction: Float?

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case layers
        case hostPrediction = "host_prediction"
    }
}

/// The HTTP routes of Docs/WireProtocol.md.
enum HTTPEndpoints {
    static func router(
        context: ServerContext,
        registry: PrometheusCollectorRegistry,
        alerts: RecentAlertsSink,
        reload: @escaping @Sendable () async -> Result<Int, LatentWatchError>
    ) -> Router<BasicRequestContext> {
        let router = Router()
        if let token = context.configuration.token { router.add(middleware: BearerTokenMiddleware(token: token)) }
        router.get("metrics") { _, _ -> Response in
            context.metrics.httpRequests.increment()
            context.metrics.queueBytes.record(context.queue.queuedBytes)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: MetricsHelp.annotate(registry.emitToBuffer())))
            )
        }
        router.get("healthz") { _, _ -> Response in
            let draining = context.draining.load(ordering: .acquiring)
            var body = servedJSON(context)
            body["status"] = draining ? "draining" : "ok"
            body["connections"] = context.connections.withLockedValue { $0.count }
            body["queued_bytes"] = context.queue.queuedBytes
            return try json(body, status: draining ? .serviceUnavailable : .ok)
        }
        router.post("v1/reload") { _, _ -> Response in
            context.metrics.httpRequests.increment()
            // One HTTP reload at a time: another request meanwhile gets 409 instead of a thread waiting for it.
            guard
                context.reloading.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
                    .exchanged
            else {
                throw HTTPError(.conflict, message: "a reload is already running; try again when it has finished")
            }
            defer { context.reloading.store(false, ordering: .releasing) }
            let outcome = await reload()
            var body = servedJSON(context)
            switch outcome {
            case .success:
                body["status"] = "reloaded"
                return try json(body, status: .ok)
            case .failure(let e):
                body["status"] = "failed"
                body["error"] = e.message
                return try json(body, status: .unprocessableContent)
            }
        }
        router.get("v1/alerts") { request, _ -> Response in
            context.metrics.httpRequests.increment()
            let limit = request.uri.queryParameters.get("limit", as: Int.self) ?? 100
            let recent = alerts.latest(min(max(limit, 0), context.configuration.recentAlerts))
            let encoder = JSONEncoder()
            encoder.nonConformingFloatEncodingStrategy = .convertToString(
                positiveInfinity: "inf",
                negativeInfinity: "-inf",
                nan: "nan"
            )
            let data = try encoder.encode(recent)
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: data))
            )
        }
        router.post("v1/observe") { request, _ -> Response in
            context.metrics.httpRequests.increment()
            let max = context.configuration.maxHTTPBodyBytes
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: max) } catch {
                throw HTTPError(.contentTooLarge, message: "the body is over \(max) bytes")
            }
            let parsed: ObserveRequest
            do { parsed = try JSONDecoder().decode(ObserveRequest.self, from: Data(buffer: body)) } catch {
                throw HTTPError(
                    .badRequest,
                    message: "expected {\"request_id\": ..., \"layers\": {name: [floats]}}: \(error)"
                )
            }
            var payload: [Float] = []
            var offsets: [Int] = []
            for l in context.welcome.layers {
                guard let v = parsed.layers[l.name] else {
                    throw HTTPError(
                        .badRequest,
                        message: "layer '\(l.name)' is missing; the layers are \(context.welcome.layers.map(\.name))"
                    )
                }
                guard v.count == l.elements else {
                    throw HTTPError(
                        .badRequest,
                        message: "layer '\(l.name)' takes \(l.elements) values, got \(v.count)"
                    )
                }
                offsets.append(payload.count)
                payload.append(contentsOf: v)
            }
            if parsed.hostPrediction != nil && !context.takesPredictions {
                throw HTTPError(
                    .badRequest,
                    message:
                        "host_prediction was given, but the served model of the primary layer is not a regression model"
                )
            }
            if parsed.requestID.map({ $0.utf8.count > WireFormat.maxRequestIDBytes }) == true {
                throw HTTPError(.badRequest, message: "request_id is over \(WireFormat.maxRequestIDBytes) bytes")
            }
            guard !context.draining.load(ordering: .acquiring) else {
                throw HTTPError(.serviceUnavailable, message: "the server is shutting down")
            }
            let results: [WireAssessment]? = await withCheckedContinuation { cont in
                let batch = IngestBatch(
                    owner: HTTPWaiter(cont),
                    sequence: 0,
                    reply: true,
                    rows: 1,
                    requestIDs: [parsed.requestID],
                    payload: payload,
                    offsets: offsets,
                    elements: context.elements,
                    predictions: parsed.hostPrediction.map { [$0] }
                )
                if context.queue.push(batch, force: false) {
                    context.metrics.inputs.increment()
                } else {
                    context.metrics.rejectedInputs.increment()
                    cont.resume(returning: nil)
                }
            }
            guard let row = results?.first else {
                throw HTTPError(.serviceUnavailable, message: "the queue is full; try again later")
            }
            return try json(assessmentJSON(row, layers: context.welcome.layers), status: .ok)
        }
        return router
    }

    /// The served models, their generation and the last reload (for `/healthz` and `/v1/reload`).
    static func servedJSON(_ context: ServerContext) -> [String: Any] {
        let served = context.served.withLockedValue { $0 }
        var body: [String: Any] = [
            "layers": served.welcome.layers.map {
                ["name": $0.name, "elements": $0.elements, "model_id": $0.modelID] as [String: Any]
            },
            "models": served.models.map {
                [
                    "layer": $0.layer, "fingerprint": $0.fingerprint, "family": $0.family,
                    "components": $0.components,
                    "posterior_temperature": $0.posteriorTemperature.map { $0 as Any } ?? NSNull(),
                    "joint_calibration_inputs": $0.jointCount.map { $0 as Any } ?? NSNull(),
                ] as [String: Any]
            },
            "fusion": served.fusion,
            "generation": served.generation,
        ]
        if let r = served.lastReload {
            body["last_reload"] =
                [
                    "successful": r.successful, "time": r.time, "error": r.error.map { $0 as Any } ?? NSNull(),
                ] as [String: Any]
        }
        return body
    }

    static func assessmentJSON(_ a: WireAssessment, layers: [WireLayer]) -> [String: Any] {
        func num(_ x: Double) -> Any { x.isFinite ? x : NSNull() }
        var flags: [String] = []
        let f = Assessment.Flags(rawValue: a.flags)
        if f.contains(.outOfDistribution) { flags.append("out_of_distribution") }
        if f.contains(.ambiguous) { flags.append("ambiguous") }
        if f.contains(.windowAlarm) { flags.append("window_alarm") }
        if f.contains(.shiftAlarm) { flags.append("shift_alarm") }
        if f.contains(.disagreement) { flags.append("disagreement") }
        var o: [String: Any] = [
            "status": a.status == 0 ? "assessed" : "invalid",
            "index": a.index,
            "flags": flags,
            "fused_p_value": num(a.fusedPValue),
            "entropy": num(a.entropy),
            "entropy_p_value": num(a.entropyPValue),
            "shift_log_evidence": num(a.shiftLogEvidence),
            "predicted": a.predicted >= 0 ? Int(a.predicted) as Any : NSNull(),
            "layers": zip(layers, zip(a.surprise, a.pValues)).map {
                ["name": $0.0.name, "surprise": num($0.1.0), "p_value": num($0.1.1)] as [String: Any]
            },
        ]
        // Regression models: the prediction, its spread and the spread's p-value, and the prediction interval
        // (an unbounded end is null).
        if !a.prediction.isNaN {
            o["prediction"] = num(a.prediction)
            o["predictive_spread"] = num(a.predictiveSpread)
            o["spread_p_value"] = num(a.spreadPValue)
            if !a.intervalLow.isNaN { o["prediction_interval"] = [num(a.intervalLow), num(a.intervalHigh)] }
        }
        // With the host's prediction: its distance from the prediction and that distance's p-value.
        if !a.hostPrediction.isNaN {
            o["host_prediction"] = num(a.hostPrediction)
            o["disagreement"] = num(a.disagreement)
            o["disagreement_p_value"] = num(a.disagreementPValue)
        }
        return o
    }

    static func json(_ object: Any, status: HTTPResponse.Status) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}
