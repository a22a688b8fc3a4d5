import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers

/// The router a service adds its routes to: Hummingbird's router, remembering each path and its
/// methods so that a known path asked with another method answers 405 with `Allow` (RFC 9110),
/// not 404. Groups made from it (`router.group("/v1/moderation")`) record through it too.
public struct ServiceRouter: RouterMethods {
    public typealias Context = AppRequestContext

    public let router: Router<AppRequestContext>
    let book: RouteBook

    public init(_ router: Router<AppRequestContext>, book: RouteBook) {
        self.router = router
        self.book = book
    }

    @discardableResult
    public func on<Responder: HTTPResponder>(_ path: RouterPath, method: HTTPRequest.Method, responder: Responder) -> ServiceRouter
    where Responder.Context == AppRequestContext {
        book.record(path, method)
        router.on(path, method: method, responder: responder)
        return self
    }

    @discardableResult
    public func add(middleware: any MiddlewareProtocol<Request, Response, AppRequestContext>) -> ServiceRouter {
        router.add(middleware: middleware)
        return self
    }
}

/// Every path a router serves and its methods.
public final class RouteBook: Sendable {
    private let routes = NIOLockedValueBox<[(path: RouterPath, methods: Set<String>)]>([])

    public init() {}

    func record(_ path: RouterPath, _ method: HTTPRequest.Method) {
        routes.withLockedValue { routes in
            if let index = routes.firstIndex(where: { $0.path == path }) {
                routes[index].methods.insert(method.rawValue)
            } else {
                routes.append((path, [method.rawValue]))
            }
        }
    }

    /// The methods served at `path` (with HEAD wherever GET is), or nil when no route matches it.
    public func methods(for path: String) -> [String]? {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods: Set<String> = []
        var matched = false
        for route in routes.withLockedValue({ $0 }) where Self.matches(route.path, components) {
            matched = true
            methods.formUnion(route.methods)
        }
        guard matched else { return nil }
        if methods.contains("GET") { methods.insert("HEAD") }
        return methods.sorted()
    }

    static func matches(_ path: RouterPath, _ components: [Substring]) -> Bool {
        var index = 0
        for element in path.components {
            if element == RouterPath.Element.recursiveWildcard { return true }
            guard index < components.count, element ~= components[index] else { return false }
            index += 1
        }
        return index == components.count
    }
}

/// Turns the router's 404 for a known path with an unserved method into 405 with `Allow`.
public struct MethodNotAllowedMiddleware<Context: ServiceRequestContext>: RouterMiddleware {
    let book: RouteBook

    public init(book: RouteBook) { self.book = book }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            guard let methods = book.methods(for: request.uri.path), !methods.contains(request.method.rawValue) else { throw error }
            throw Problem(.methodNotAllowed, "\(request.method.rawValue) is not supported here; use \(methods.joined(separator: ", ")).",
                          headers: [.allow: methods.joined(separator: ", ")])
        }
    }
}
