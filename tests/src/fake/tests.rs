#![allow(clippy::unwrap_used)] // test code

use super::*;

#[test]
fn a_fake_records_each_request_and_answers_what_the_script_says() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let (seen, connections) = unix_counted(&socket, |req| match req.path.as_str() {
        "/api/pair/exchange" => answer(200, &format!(r#"{{"got":{}}}"#, req.body.len())),
        _ => (404, vec![("x-why".into(), "script".into())], "{}".into()),
    });
    let (status, body) =
        crate::unix_request(&socket, "POST", "/api/pair/exchange", Some("body")).unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"got":4}"#));
    let (status, _) = crate::unix_request(&socket, "GET", "/elsewhere?x=1", None).unwrap();
    assert_eq!(status, 404);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/api/pair/exchange");
    assert_eq!(seen[0].header("Content-Type"), Some("application/json"));
    assert_eq!(seen[0].body, b"body");
    assert_eq!(seen[1].path, "/elsewhere?x=1");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
