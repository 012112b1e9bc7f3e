fn main() {
    hyper_agent::main()
}
