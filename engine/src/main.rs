//! berthd: the Docker Engine API daemon of berth.

fn main() {
    eprintln!("berthd: not built yet");
    std::process::exit(1);
}
