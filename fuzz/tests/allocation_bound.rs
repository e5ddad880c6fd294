//! The allocation bound is enforced through the global allocator.

#[global_allocator]
static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;

#[test]
fn a_parser_that_allocates_from_the_input_fails_the_run() {
    let result = std::panic::catch_unwind(|| {
        o1_fuzz::bytes("allocates", &[vec![0u8; 8]], 200, |input| {
            // Trusts a length field, as a careless parser would.
            let head = input.get(..4).ok_or("short")?;
            let n = u32::from_le_bytes(head.try_into().unwrap());
            let v: Vec<u8> = Vec::with_capacity((n & 0x3fff_ffff) as usize);
            std::hint::black_box(v);
            Ok(())
        })
    });
    let message = result.expect_err("an allocation sized from the input must be caught");
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("asked for one allocation"), "{message}");
}
