fn main() {
    eprintln!("hyperd: not built yet; see issue \"hyperd and hyperctl\"");
    std::process::exit(1)
}
