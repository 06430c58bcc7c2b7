// mimalloc: cairn builds and drops millions of small values per large plan; the system
// allocator spent about a third of a 100k-resource plan in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Die quietly on a closed pipe (`cairn plan | head`), as Unix tools do, instead of
    // panicking in println!.
    // SAFETY: setting a signal disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cairn::cli::main());
}
