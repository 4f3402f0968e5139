//! Pairing code normalisation (`abcd-efgh`, `ABCD EFGH`, `abcdefgh` → `ABCDEFGH`).
//!
//! Checked: no panic; an accepted code is exactly 8 characters of the alphabet, and formatting
//! then normalising it again gives the same code.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netclaw_daemon::pairing::{format_code, normalize_code, ALPHABET, CODE_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(code) = normalize_code(input) {
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{input:?}");
        let shown = format_code(&code);
        assert_eq!(shown.len(), CODE_LEN + 1);
        let again = normalize_code(&shown).expect("a formatted code normalises");
        assert_eq!(again.as_str(), code.as_str());
        let lower = normalize_code(&shown.to_ascii_lowercase()).expect("lower case is accepted");
        assert_eq!(lower.as_str(), code.as_str());
    }
});
