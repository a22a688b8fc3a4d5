import Testing
@testable import Platform

/// Checks a state machine pair by pair against the table of what it allows: each allowed pair
/// leads where the table says, each other pair is a 409 `invalid-transition` naming the event.
/// Answers how many pairs were allowed and refused, for the caller to pin.
func expectTransitionTable<State: CaseIterable & Hashable, Event: CaseIterable & Hashable & RawRepresentable>(
    _ allowed: [State: [Event: State]], transition: (State, Event) throws -> State,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> (permitted: Int, refused: Int) where Event.RawValue == String {
    var permitted = 0, refused = 0
    for state in State.allCases {
        for event in Event.allCases {
            if let next = allowed[state]?[event] {
                permitted += 1
                #expect(try transition(state, event) == next, "\(state) on \(event)", sourceLocation: sourceLocation)
            } else {
                refused += 1
                let problem = try #require(throws: Problem.self, "\(state) on \(event)", sourceLocation: sourceLocation) {
                    try transition(state, event)
                }
                #expect(problem.status == .conflict, sourceLocation: sourceLocation)
                #expect(problem.typeSlug == "invalid-transition", sourceLocation: sourceLocation)
                #expect(problem.detail?.contains(event.rawValue) == true, sourceLocation: sourceLocation)
            }
        }
    }
    return (permitted, refused)
}
