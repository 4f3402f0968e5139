//! SPIFFE ids, trust domains and host-ids as parsed from certificates and configuration.
//!
//! Checked: no panic; whatever parses prints back to exactly the input (parsing is strict, it
//! never normalises), and the parts re-assemble to the same id.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netclaw_pki::{HostId, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = s.parse::<SpiffeId>() {
        assert_eq!(id.to_string(), s);
        let rebuilt = SpiffeId::operator_agent(id.trust_domain().clone(), id.host_id().clone());
        assert_eq!(rebuilt, id);
        assert_eq!(
            id.trust_domain()
                .as_str()
                .parse::<TrustDomain>()
                .ok()
                .as_ref(),
            Some(id.trust_domain())
        );
    }
    if let Ok(td) = s.parse::<TrustDomain>() {
        assert_eq!(td.as_str(), s);
    }
    if let Ok(h) = s.parse::<HostId>() {
        assert_eq!(h.as_str(), s);
    }
});
