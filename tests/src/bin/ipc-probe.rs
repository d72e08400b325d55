//! Connects to an agent socket, sends Hello, and prints what happened: `hello-ok`, `closed` or
//! `connect-failed: ...`. Used to check that the agent refuses peers of another uid.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn main() {
    let path = std::env::args().nth(1).expect("socket path");
    let mut s = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            println!("connect-failed: {e}");
            return;
        }
    };
    let body = br#"{"type":"Hello","protocol_version":1}"#;
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    if s.write_all(&frame).is_err() {
        println!("closed");
        return;
    }
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => println!("hello-ok"),
        Err(_) => println!("closed"),
    }
}
