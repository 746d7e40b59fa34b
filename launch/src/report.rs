//! How the load generators (echo's and kv's) print their report: as text, or as JSON for
//! `--json` (what `megatcp-bench` and the tests read).

/// Prints `r` to standard output: its `Display` text, or JSON with `json`.
pub fn print<R: std::fmt::Display + serde::Serialize>(r: &R, json: bool) {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    } else {
        println!("{r}");
    }
}
