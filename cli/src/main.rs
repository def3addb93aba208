//! berth: the command-line client of berth.

fn main() {
    eprintln!("berth: not built yet");
    std::process::exit(1);
}
