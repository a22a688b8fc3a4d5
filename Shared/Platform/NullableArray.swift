import NIOCore
import PostgresNIO

/// An array parameter whose elements may be NULL (`[UUID?]`, `[Date?]`), for the statements that
/// write a set of rows from parallel arrays (`FROM unnest($1::uuid[], …)`): PostgresNIO binds
/// arrays of non-optional elements only.
///
///     try await tx.query("UPDATE t SET ended_at = u.ended_at FROM unnest(\(ids)::uuid[], \(NullableArray(ends))::timestamptz[]) …")
public struct NullableArray<Element: PostgresArrayEncodable & PostgresNonThrowingEncodable>: PostgresNonThrowingEncodable, Sendable
where Element: Sendable {
    public var elements: [Element?]

    public init(_ elements: [Element?]) {
        self.elements = elements
    }

    public static var psqlType: PostgresDataType { Element.psqlArrayType }
    public static var psqlFormat: PostgresFormat { .binary }

    /// Postgres's binary array: dimensions, a has-nulls flag, the element type, one dimension's
    /// length and lower bound, then each element as a length (-1 for NULL) and its bytes.
    public func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) {
        buffer.writeInteger(elements.isEmpty ? 0 : 1, as: Int32.self)
        buffer.writeInteger(elements.contains { $0 == nil } ? 1 : 0, as: Int32.self)
        buffer.writeInteger(Element.psqlType.rawValue)
        guard !elements.isEmpty else { return }
        buffer.writeInteger(Int32(elements.count), as: Int32.self)
        buffer.writeInteger(1, as: Int32.self)
        for element in elements {
            if let element {
                let lengthAt = buffer.writerIndex
                buffer.writeInteger(0, as: Int32.self)
                let start = buffer.writerIndex
                element.encode(into: &buffer, context: context)
                buffer.setInteger(Int32(buffer.writerIndex - start), at: lengthAt, as: Int32.self)
            } else {
                buffer.writeInteger(-1, as: Int32.self)
            }
        }
    }
}
