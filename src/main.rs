// mimalloc: cairn builds and drops millions of small values per large plan; the system
// allocator spent about a third of a 100k-resource plan in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(cairn::cli::main());
}
