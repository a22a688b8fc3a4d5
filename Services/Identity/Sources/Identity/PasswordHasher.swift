import CArgon2
import Foundation
import NIOPosix

/// Argon2id password hashing (OWASP parameters m=19 MiB, t=2, p=1) in PHC string form.
/// Hashing takes tens of milliseconds of CPU, so it runs on NIO's blocking thread pool,
/// never on the event loop or the cooperative pool.
public struct PasswordHasher: Sendable {
    public struct Parameters: Sendable, Equatable {
        public var memoryKiB: UInt32
        public var iterations: UInt32
        public var parallelism: UInt32

        public static let owasp = Parameters(memoryKiB: 19_456, iterations: 2, parallelism: 1)
    }

    public enum HashingError: Error {
        case failed(code: Int32)
    }

    let parameters: Parameters
    let threadPool: NIOThreadPool

    public init(parameters: Parameters = .owasp, threadPool: NIOThreadPool = .singleton) {
        self.parameters = parameters
        self.threadPool = threadPool
    }

    public func hash(_ password: String) async throws -> String {
        let parameters = self.parameters
        return try await threadPool.runIfActive {
            var salt = [UInt8](repeating: 0, count: 16)
            var generator = SystemRandomNumberGenerator()
            for index in salt.indices { salt[index] = generator.next() }
            let passwordBytes = Array(password.utf8)
            let length = argon2_encodedlen(parameters.iterations, parameters.memoryKiB, parameters.parallelism,
                                           UInt32(salt.count), 32, Argon2_id)
            var encoded = [CChar](repeating: 0, count: length)
            let result = argon2id_hash_encoded(
                parameters.iterations, parameters.memoryKiB, parameters.parallelism,
                passwordBytes, passwordBytes.count, salt, salt.count, 32, &encoded, length)
            guard result == ARGON2_OK.rawValue else { throw HashingError.failed(code: result) }
            return String(decoding: encoded.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// True when `password` matches the PHC string; a malformed hash never matches.
    public func verify(_ password: String, against phc: String) async -> Bool {
        (try? await threadPool.runIfActive {
            let passwordBytes = Array(password.utf8)
            return argon2id_verify(phc, passwordBytes, passwordBytes.count) == ARGON2_OK.rawValue
        }) ?? false
    }

    /// The parameters recorded in a PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
    public static func parameters(of phc: String) -> Parameters? {
        let parts = phc.split(separator: "$")
        guard parts.count == 5, parts[0] == "argon2id", parts[1] == "v=19" else { return nil }
        var values: [Substring: UInt32] = [:]
        for pair in parts[2].split(separator: ",") {
            let keyValue = pair.split(separator: "=")
            guard keyValue.count == 2, let value = UInt32(keyValue[1]) else { return nil }
            values[keyValue[0]] = value
        }
        guard let m = values["m"], let t = values["t"], let p = values["p"] else { return nil }
        return Parameters(memoryKiB: m, iterations: t, parallelism: p)
    }
}
