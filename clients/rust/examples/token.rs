//! `cargo run --example token -- ACCOUNT`: prints ACCOUNT's access token from the daemon at
//! TOKEND_SOCKET (or where the CLI would look), as `tokend token ACCOUNT` does. On an error
//! it prints the daemon's message and exits non-zero: 3 when a login is needed (as the CLI),
//! 2 for bad usage, 1 otherwise.

use std::process::exit;

use tokend_client::{Client, ErrorCode};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: token ACCOUNT");
        exit(2);
    }
    let tokend = Client::new().user_agent("tokend-client-example-token");
    match tokend.token(&args[0]) {
        Ok(token) => println!("{}", token.access_token),
        Err(err) => {
            eprintln!("{}", err);
            exit(match err.code() {
                Some(ErrorCode::ReauthRequired) | Some(ErrorCode::LoginPending) => 3,
                _ => 1,
            });
        }
    }
}
