use super::*;

fn check(method: Method, target: &str) -> Result<Route, NotForwarded> {
    let uri: Uri = target.parse().unwrap();
    classify(&method, &uri)
}

#[test]
fn the_cli_routes_are_forwarded() {
    assert_eq!(check(Method::GET, "/api/health/ready"), Ok(Route::Ready));
    assert_eq!(check(Method::GET, "/api/health/status"), Ok(Route::Status));
    assert_eq!(check(Method::GET, "/api/whoami"), Ok(Route::WhoAmI));
    assert_eq!(check(Method::GET, "/api/pair/devices"), Ok(Route::Devices));
    assert_eq!(
        check(Method::DELETE, "/api/pair/devices/phone"),
        Ok(Route::RevokeDevice)
    );
    // Names the CLI percent-encodes (`/`, spaces, dot-only names).
    assert_eq!(
        check(Method::DELETE, "/api/pair/devices/a%2Fb%20c"),
        Ok(Route::RevokeDevice)
    );
    assert_eq!(
        check(Method::DELETE, "/api/pair/devices/%2E%2E"),
        Ok(Route::RevokeDevice)
    );
    assert_eq!(
        check(Method::POST, "/api/local-control/v1/pairing-code"),
        Ok(Route::PairingCode)
    );
    assert_eq!(
        check(Method::POST, "/api/local-control/v1/devices/import"),
        Ok(Route::ImportDevices)
    );
    assert_eq!(
        check(Method::GET, "/api/events?limit=5&follow=true"),
        Ok(Route::Events)
    );
    assert_eq!(check(Method::GET, "/metrics"), Ok(Route::Metrics));
    assert_eq!(check(Method::GET, "/hub/session"), Ok(Route::Hub));
}

#[test]
fn every_spelling_of_the_renewal_route_is_refused() {
    for target in [
        "/api/local-control/v1/pki/certificate",
        "/api/local-control/v1/pki/certificate?x=1",
        "/api/local-control/v1/pki/certificate/",
        "/api/local-control/v1/pki/../pki/certificate",
        "/api/local-control/v1/pairing-code/../pki/certificate",
        "/api/local-control/v1/pki%2Fcertificate",
        "/api/local-control/v1/%70ki/certificate",
        "/api/local-control/v1/pki/%63ertificate",
        "/api/local-control/v1//pki/certificate",
        "//api/local-control/v1/pki/certificate",
        "/./api/local-control/v1/pki/certificate",
        "/API/local-control/v1/pki/certificate",
        "/api/local-control/v1/pki",
        "/api/local-control/v1/pki/",
    ] {
        for method in [Method::POST, Method::GET, Method::PUT] {
            assert_eq!(
                check(method.clone(), target),
                Err(NotForwarded::Path),
                "{method} {target}"
            );
        }
    }
}

#[test]
fn only_origin_form_targets() {
    for target in [
        "http://agent/api/whoami",
        "http://192.0.2.10:5200/api/local-control/v1/pki/certificate",
        "agent:80",
        "*",
    ] {
        assert_eq!(
            check(Method::GET, target),
            Err(NotForwarded::TargetForm),
            "{target}"
        );
    }
}

#[test]
fn near_misses_are_refused() {
    for target in [
        "/",
        "/api",
        "/api/whoami/",
        "/api//whoami",
        "/api/whoami%2F",
        "/api/%77hoami",
        "/API/whoami",
        "/api/pair/exchange",
        "/api/pair/devices/",
        "/api/pair/devices/a/b",
        "/api/pair/devices/..",
        "/api/pair/devices/.",
        "/api/pair/devices//x",
        "/agent/v1/status/../../api/local-control/v1/pki/certificate",
    ] {
        assert_eq!(
            check(Method::DELETE, target),
            Err(NotForwarded::Path),
            "{target}"
        );
        assert_eq!(
            check(Method::GET, target),
            Err(NotForwarded::Path),
            "{target}"
        );
    }
}

#[test]
fn a_known_path_with_another_method_names_its_method() {
    assert_eq!(
        check(Method::POST, "/api/whoami"),
        Err(NotForwarded::Method("GET"))
    );
    assert_eq!(
        check(Method::HEAD, "/api/health/status"),
        Err(NotForwarded::Method("GET"))
    );
    assert_eq!(
        check(Method::GET, "/api/local-control/v1/pairing-code"),
        Err(NotForwarded::Method("POST"))
    );
    assert_eq!(
        check(Method::GET, "/api/pair/devices/phone"),
        Err(NotForwarded::Method("DELETE"))
    );
}
