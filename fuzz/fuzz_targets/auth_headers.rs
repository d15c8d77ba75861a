//! Any `Authorization` header value and any `Cookie` header: read into credentials or refused, never a panic; a
//! Basic header that is read gives back what was encoded.
#![no_main]

use kiln_web::auth::headers::{cookie, parse_authorization, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Credentials::Basic { name, password }) = parse_authorization(data) {
        assert!(!name.contains(':'), "the name ends at the first colon");
        let _ = password;
    }
    let _ = cookie(data, "kiln_session");
    let _ = cookie(data, "kiln_login");
});
