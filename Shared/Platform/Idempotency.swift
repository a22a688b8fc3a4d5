import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO

extension HTTPField.Name {
    public static let idempotencyKey = Self("Idempotency-Key")!
    public static let idempotentReplayed = Self("Idempotent-Replayed")!
}

/// A response that can be stored and replayed byte for byte: what an idempotent operation returns.
public struct StoredResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    /// Headers a replay must repeat (`Location`, `ETag`).
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, contentType: String, headers: [String: String] = [:], body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    /// A JSON response in the suite's encoding.
    public static func json<Value: Encodable>(_ value: Value, status: HTTPResponse.Status = .ok, headers: [String: String] = [:]) throws -> StoredResponse {
        StoredResponse(status: Int(status.code), contentType: "application/json; charset=utf-8", headers: headers, body: try JSONWriter.encode(value))
    }

    public func response(replayed: Bool) -> Response {
        var fields = HTTPFields()
        fields[.contentType] = contentType
        fields[.cacheControl] = "no-store"
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name(name) { fields[field] = value }
        }
        if replayed { fields[.idempotentReplayed] = "true" }
        return Response(status: HTTPResponse.Status(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// `Idempotency-Key` for POSTs that create orders, subscriptions, refunds or payouts (API.md):
/// the key is scoped to the caller and kept 24 hours with a hash of the request. A repeat with the
/// same body replays the first answer (`Idempotent-Replayed: true`); the same key with another
/// body is 422 `idempotency-key-reused`; a repeat while the first still runs is 409
/// `idempotency-key-in-use`. The record is written in the same transaction as the effect, so a
/// crash between the two cannot apply the effect twice; an effect that fails (a problem) stores
/// nothing, and a retry runs it again.
public enum Idempotency {
    /// How long a key is remembered (seconds); after that the same key is a new request.
    public static let retention: Int = 24 * 3600
    public static let keyLength = 1...255

    /// The request's key, or a 400 `idempotency-key-required`.
    public static func key(of request: Request) throws -> String {
        guard let key = request.headers[.idempotencyKey], keyLength.contains(key.utf8.count),
              key.utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E })
        else {
            throw Problem(.malformedRequest, "An Idempotency-Key header of 1 to 255 visible ASCII characters is required.",
                          typeSlug: "idempotency-key-required")
        }
        return key
    }

    /// A fingerprint of what was asked: method, path and the body's JSON in canonical form (so a
    /// repeat that only re-orders keys or spacing is still the same request).
    public static func fingerprint(method: HTTPRequest.Method, path: String, body: JSONValue?) throws -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: Array("\(method.rawValue) \(path)\n".utf8))
        if let body { hasher.update(data: try JSONWriter.encode(body)) }
        return Array(hasher.finalize())
    }

    /// Runs `effect` once per (caller, key): in one transaction with the key's record, or not at all.
    public static func run(caller: UUID, key: String, fingerprint: [UInt8], client: PostgresClient, context: OperationContext,
                           _ effect: (Transaction) async throws -> StoredResponse) async throws -> Response {
        let lock = Database.advisoryLockKey("idempotency:\(caller.uuidString.lowercased()):\(key)")
        let outcome: Outcome = try await Database.transaction(client, context) { transaction in
            // Held until commit: a concurrent repeat finds it taken and is told so at once.
            guard try await transaction.first("SELECT pg_try_advisory_xact_lock(\(lock))", as: Bool.self) == true else {
                throw Problem(.conflict, "A request with this Idempotency-Key is still being processed; retry it shortly.",
                              typeSlug: "idempotency-key-in-use", headers: [.retryAfter: "1"])
            }
            let rows = try await transaction.query("""
                SELECT fingerprint, status, content_type, headers::text, body FROM idempotency_keys
                WHERE caller = \(caller) AND key = \(key) AND created_at > now() - \(retention) * interval '1 second'
                """)
            for try await (stored, status, contentType, headers, body) in rows.decode((ByteBuffer, Int32, String, String, ByteBuffer).self) {
                guard Array(buffer: stored) == fingerprint else {
                    throw Problem(.validationFailed, "This Idempotency-Key was used with a different request.",
                                  fieldErrors: [FieldError("Idempotency-Key", "was used with a different request body")],
                                  typeSlug: "idempotency-key-reused")
                }
                let headerMap = (try? JSONDecoder().decode([String: String].self, from: Data(headers.utf8))) ?? [:]
                return .replay(StoredResponse(status: Int(status), contentType: contentType, headers: headerMap, body: Array(buffer: body)))
            }
            let response = try await effect(transaction)
            try await transaction.query("""
                INSERT INTO idempotency_keys (caller, key, fingerprint, status, content_type, headers, body)
                VALUES (\(caller), \(key), \(ByteBuffer(bytes: fingerprint)), \(Int32(response.status)), \(response.contentType),
                        \(try JSONWriter.string(response.headers))::jsonb, \(ByteBuffer(bytes: response.body)))
                ON CONFLICT (caller, key) DO UPDATE SET
                    fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status, content_type = EXCLUDED.content_type,
                    headers = EXCLUDED.headers, body = EXCLUDED.body, created_at = now()
                """)
            return .first(response)
        }
        switch outcome {
        case .first(let response): return response.response(replayed: false)
        case .replay(let response):
            context.logger.info("idempotent request replayed", metadata: ["idempotency.key": "\(key)"])
            return response.response(replayed: true)
        }
    }

    enum Outcome: Sendable {
        case first(StoredResponse)
        case replay(StoredResponse)
    }
}

extension Request {
    /// Reads the JSON body once for an idempotent POST: the decoded value, and the fingerprint
    /// of the request it came in.
    public func idempotentBody<Value: Decodable>(_ type: Value.Type, limit: Int) async throws -> (value: Value, fingerprint: [UInt8]) {
        let data = try await JSONBody.collect(from: self, limit: limit)
        let value = try JSONBody.decode(type, from: data)
        let canonical = try? JSONValue(data: data)
        return (value, try Idempotency.fingerprint(method: method, path: uri.path, body: canonical))
    }
}
