//! The Lua scripts (`lua/`), each sent once per connection (`EVALSHA`, loaded on `NOSCRIPT`).

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");
const BREAKER: &str = include_str!("lua/breaker.lua");

pub(super) struct Scripts {
    pub hold: Script,
    pub settle: Script,
    pub book: Script,
    pub circuit_record: Script,
    pub circuit_claim: Script,
    pub circuit_read: Script,
    pub ratelimit: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        let with = |lib: &str, body: &str| Script::new(&format!("{lib}\n{body}"));
        Scripts {
            hold: with(COMMON, include_str!("lua/hold.lua")),
            settle: with(COMMON, include_str!("lua/settle.lua")),
            book: with(COMMON, include_str!("lua/book.lua")),
            circuit_record: with(BREAKER, include_str!("lua/circuit_record.lua")),
            circuit_claim: with(BREAKER, include_str!("lua/circuit_claim.lua")),
            circuit_read: with(BREAKER, include_str!("lua/circuit_read.lua")),
            ratelimit: Script::new(include_str!("lua/ratelimit.lua")),
        }
    }
}
