import Foundation
import Logging

/// Log output format: JSON lines for machines, a compact text line for people at a terminal.
public enum LogFormat: String, Sendable {
    case json, text, auto
}

public enum LoggingSetup {
    /// Installs the process-wide log handler once, at start-up.
    public static func bootstrap(service: String, reader: ConfigReader) {
        let (level, json) = output(reader: reader)
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, service: service, json: json)
            handler.logLevel = level
            return handler
        }
    }

    /// The level and format `LOG_LEVEL` and `LOG_FORMAT` ask for.
    public static func output(reader: ConfigReader) -> (level: Logger.Level, json: Bool) {
        let level = Logger.Level(rawValue: reader.string("LOG_LEVEL", default: "info").lowercased()) ?? .info
        let requested = LogFormat(rawValue: reader.string("LOG_FORMAT", default: "auto").lowercased()) ?? .auto
        switch requested {
        case .json: return (level, true)
        case .text: return (level, false)
        case .auto: return (level, isatty(STDOUT_FILENO) == 0)
        }
    }
}

/// Info lines written on every request (the gateway's access log): the same output as a `Logger`
/// line, but with fields in a fixed order, so no metadata dictionary is built, merged or sorted.
public struct FixedFieldLog: Sendable {
    public let isEnabled: Bool
    let label: String
    let service: String
    let json: Bool

    public init(label: String, service: String, reader: ConfigReader) {
        let (level, json) = LoggingSetup.output(reader: reader)
        self.init(label: label, service: service, json: json, enabled: level <= .info)
    }

    public init(label: String, service: String, json: Bool, enabled: Bool) {
        self.label = label
        self.service = service
        self.json = json
        self.isEnabled = enabled
    }

    /// Writes `message` at info with `fields` in the order given (keep them sorted by key to
    /// match `Logger` lines).
    public func info(_ message: String, _ fields: KeyValuePairs<String, String>) {
        guard isEnabled else { return }
        LineWriter.shared.write(line(message, fields, date: Date()))
    }

    func line(_ message: String, _ fields: KeyValuePairs<String, String>, date: Date) -> String {
        LineLogHandler.format(level: .info, message: message, fields: fields.lazy.map { ($0.key, .string($0.value)) },
                              label: label, service: service, json: json, date: date)
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
        LineWriter.shared.write(line, urgent: event.level >= .warning)
    }

    static func format(
        level: Logger.Level, message: String, metadata: Logger.Metadata,
        label: String, service: String, json: Bool, date: Date
    ) -> String {
        format(level: level, message: message, fields: metadata.sorted { $0.key < $1.key }.lazy.map { ($0.key, $0.value) },
               label: label, service: service, json: json, date: date)
    }

    /// One line with `fields` in the order given.
    static func format(
        level: Logger.Level, message: String, fields: some Sequence<(String, Logger.MetadataValue)>,
        label: String, service: String, json: Bool, date: Date
    ) -> String {
        let timestamp = FastTime.rfc3339(date)
        if json {
            // Hand-built: this runs for every request, and a generic JSON encoder costs more than the request.
            var line = "{\"time\":\"\(timestamp)\",\"level\":\"\(level.rawValue)\",\"service\":"
            line.reserveCapacity(384)
            JSONText.appendString(service, to: &line)
            line += ",\"logger\":"
            JSONText.appendString(label, to: &line)
            line += ",\"message\":"
            JSONText.appendString(message, to: &line)
            for (key, value) in fields {
                line += ","
                JSONText.appendString(key, to: &line)
                line += ":"
                appendJSON(value, to: &line)
            }
            line += "}"
            return line
        }
        var line = "\(timestamp) \(level.rawValue.uppercased()) [\(service)] \(message)"
        for (key, value) in fields {
            line += " \(key)=\(value)"
        }
        return line.contains("\n") ? line.replacingOccurrences(of: "\n", with: "\\n") : line
    }

    static func appendJSON(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let string): JSONText.appendString(string, to: &line)
        case .stringConvertible(let convertible): JSONText.appendString(convertible.description, to: &line)
        case .array(let array):
            line += "["
            for (index, element) in array.enumerated() {
                if index > 0 { line += "," }
                appendJSON(element, to: &line)
            }
            line += "]"
        case .dictionary(let dictionary):
            line += "{"
            for (index, (key, element)) in dictionary.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { line += "," }
                JSONText.appendString(key, to: &line)
                line += ":"
                appendJSON(element, to: &line)
            }
            line += "}"
        }
    }
}

/// Minimal JSON string escaping (RFC 8259 §7).
enum JSONText {
    static func appendString(_ string: String, to line: inout String) {
        line += "\""
        // Most values need no escaping: append them whole instead of scalar by scalar.
        if !string.utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }) {
            line += string
            line += "\""
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20:
                line += "\\u00"
                line += String(scalar.value, radix: 16).count == 1 ? "0" + String(scalar.value, radix: 16) : String(scalar.value, radix: 16)
            default: line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }
}

/// RFC 3339 UTC timestamps with milliseconds, without a formatter object per call.
public enum FastTime {
    public static func rfc3339(_ date: Date) -> String {
        // The nearest millisecond: a time read from "…:00.300Z" is 0.29999… s past the second as a
        // Double, and truncating would write it back as .299.
        let total = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(total >= 0 ? total / 1000 : (total - 999) / 1000)
        let millis = Int(total - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}

/// Serialises writes so concurrent log lines never interleave. Lines below `warning` are
/// buffered and written by a background thread at most 50 ms later (one write for many lines,
/// off the request path); a warning or worse writes the buffer at once, and so does exit.
final class LineWriter: @unchecked Sendable {
    static let shared = LineWriter()
    private let lock = NSLock()
    private let wake = NSCondition()
    private var buffer: [UInt8] = []
    /// Taken by `flush` while it writes, so writers never wait on the write(2) call.
    private let writing = NSLock()
    private var spare: [UInt8] = []
    static let flushInterval = 0.05
    static let maximumBuffered = 256 * 1024

    private init() {
        buffer.reserveCapacity(64 * 1024)
        spare.reserveCapacity(64 * 1024)
        let thread = Thread { [unowned self] in self.flushLoop() }
        thread.name = "log-writer"
        thread.start()
        atexit { LineWriter.shared.flush() }
    }

    func write(_ line: String, urgent: Bool = false) {
        lock.lock()
        buffer.append(contentsOf: line.utf8)
        buffer.append(UInt8(ascii: "\n"))
        let full = buffer.count >= Self.maximumBuffered
        lock.unlock()
        if urgent || full { flush() }
    }

    /// Writes whatever is buffered, now.
    func flush() {
        writing.lock()
        defer { writing.unlock() }
        lock.lock()
        swap(&buffer, &spare)
        lock.unlock()
        guard !spare.isEmpty else { return }
        spare.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Foundation.write(STDOUT_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
        spare.removeAll(keepingCapacity: true)
    }

    private func flushLoop() {
        while true {
            Thread.sleep(forTimeInterval: Self.flushInterval)
            flush()
        }
    }
}
