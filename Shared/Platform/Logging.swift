import Foundation
import Logging

/// Log output format: JSON lines for machines, a compact text line for people at a terminal.
public enum LogFormat: String, Sendable {
    case json, text, auto
}

public enum LoggingSetup {
    /// Installs the process-wide log handler once, at start-up.
    public static func bootstrap(service: String, reader: ConfigReader) {
        let level = Logger.Level(rawValue: reader.string("LOG_LEVEL", default: "info").lowercased()) ?? .info
        let requested = LogFormat(rawValue: reader.string("LOG_FORMAT", default: "auto").lowercased()) ?? .auto
        let json: Bool
        switch requested {
        case .json: json = true
        case .text: json = false
        case .auto: json = isatty(STDOUT_FILENO) == 0
        }
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, service: service, json: json)
            handler.logLevel = level
            return handler
        }
    }
}

/// Writes one line per log event to standard output, as JSON or as text.
public struct LineLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let service: String
    let json: Bool

    public init(label: String, service: String, json: Bool) {
        self.label = label
        self.service = service
        self.json = json
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Self.format(
            level: event.level, message: event.message.description, metadata: merged,
            label: label, service: service, json: json, date: Date())
        LineWriter.shared.write(line)
    }

    static func format(
        level: Logger.Level, message: String, metadata: Logger.Metadata,
        label: String, service: String, json: Bool, date: Date
    ) -> String {
        let timestamp = EventCoding.formatTime(date)
        if json {
            var object: [String: Any] = [
                "time": timestamp, "level": level.rawValue, "message": message,
                "service": service, "logger": label,
            ]
            for (key, value) in metadata { object[key] = Self.jsonValue(value) }
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]),
               let text = String(data: data, encoding: .utf8) {
                return text
            }
            return "{\"level\":\"error\",\"message\":\"unencodable log line\"}"
        }
        let fields = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return "\(timestamp) \(level.rawValue.uppercased()) [\(service)] \(message)\(fields.isEmpty ? "" : " " + fields)"
    }

    static func jsonValue(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let array): array.map(jsonValue)
        case .dictionary(let dictionary): dictionary.mapValues(jsonValue)
        }
    }
}

/// Serialises writes so concurrent log lines never interleave.
final class LineWriter: @unchecked Sendable {
    static let shared = LineWriter()
    private let lock = NSLock()

    func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        lock.lock()
        defer { lock.unlock() }
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(STDOUT_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }
}
