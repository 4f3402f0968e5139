use super::*;

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A:  b \r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT";

#[test]
fn heads_parse_once_complete() {
    assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
    let head = parse_head(CHUNKED).unwrap().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.version, 1);
    assert_eq!(head.header("x-a"), Some("b"));
    assert!(head.chunked());
    assert_eq!(&CHUNKED[head.len..head.len + 3], b"5\r\n");
    assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
}

#[test]
fn chunked_bodies_decode_whole_or_as_far_as_complete() {
    let head = parse_head(CHUNKED).unwrap().unwrap();
    let rest = &CHUNKED[head.len..];
    let (len, body) = parse_chunked(rest).unwrap().unwrap();
    assert_eq!(body, b"hello world");
    assert_eq!(&rest[len..], b"NEXT");
    assert_eq!(parse_chunked(&rest[..12]).unwrap(), None);
    assert_eq!(dechunk(&rest[..12]), b"hello");
    assert_eq!(dechunk(rest), b"hello world");
}

#[test]
fn keep_alive_responses_read_one_at_a_time() {
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    let mut stream = &two[..];
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut stream, &mut buf).unwrap(),
        (200, b"ok".to_vec())
    );
    assert_eq!(
        read_response(&mut stream, &mut buf).unwrap(),
        (404, Vec::new())
    );
    assert!(read_response(&mut stream, &mut buf).is_err());
    assert_eq!(
        parse_closed(CHUNKED).unwrap(),
        Some((200, String::from("hello world")))
    );
}
