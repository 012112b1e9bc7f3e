fn main() {
    eprintln!("hyperctl: not built yet; see issue \"hyperd and hyperctl\"");
    std::process::exit(1)
}
