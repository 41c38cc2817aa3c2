#[test]
fn show() {
    let p = picoqemu::fuzz::gen::generate(42);
    let a = p.assemble().unwrap();
    println!("{}", p.listing(&a));
    println!("pool size {}", picoqemu::fuzz::gen::pool().codes.len());
}
