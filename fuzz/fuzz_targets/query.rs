//! Any query string of a collection request (`GET /api/v2/builds?…`): it is answered, a 400 at worst, never
//! a panic, and a query that passes the bounds builds a store query for every resource.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        let _ = kiln_web::web::check_query(query);
    }
});
