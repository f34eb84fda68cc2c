// cuda_emu.cc - the host side of the CUDA emulation (see cuda_emu.h): the
// launcher, which runs a block's threads as fibers with a real barrier, and
// the few CUDA runtime calls the kernel tests make, on host memory (a
// "device pointer" is a host pointer here).
#include "cuda_emu.h"

#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <typeindex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define BP_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BP_EMU_ASAN 1
#endif
#endif
#ifndef BP_EMU_ASAN
#define BP_EMU_ASAN 0
#endif
#if BP_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#include "backprop.h"

namespace bp_emu {
namespace {

// The threads of a block are fibers (ucontext) on the calling host thread:
// each runs until it reaches __syncthreads or its end, and the barrier opens
// when every thread of the block waits at it. One host thread, no locks:
// cheap enough to run a block of 256 threads per few hundred microseconds.
enum fiber_state { RUNNABLE, WAITING, DONE };

constexpr size_t kStackBytes = 256 * 1024;  // generous: sanitizers grow frames

struct Fiber {
  ucontext_t ctx;
  char *stack = nullptr;
  fiber_state state = DONE;
  int pred = 0;
};

struct Scheduler {
  ucontext_t main;
  std::vector<Fiber> fibers;
  int current = 0;
  int barrier_sum = 0;
  const std::function<void()> *body = nullptr;
#if BP_EMU_ASAN
  const void *main_stack_bottom = nullptr;
  size_t main_stack_size = 0;
#endif
};

thread_local Scheduler *g_sched = nullptr;
thread_local bool g_barrier_seen = false;  // the running grid reached __syncthreads  // the running launch (launches do not nest)

#if BP_EMU_ASAN
// AddressSanitizer must be told about every stack switch.
void enter_fiber(Scheduler &s, Fiber &f) {
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
  swapcontext(&s.main, &f.ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
}
void leave_fiber(Scheduler &s, Fiber &f, bool finished) {
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake, s.main_stack_bottom,
                                 s.main_stack_size);
  swapcontext(&f.ctx, &s.main);
  __sanitizer_finish_switch_fiber(fake, &s.main_stack_bottom, &s.main_stack_size);
}
#else
void enter_fiber(Scheduler &s, Fiber &f) { swapcontext(&s.main, &f.ctx); }
void leave_fiber(Scheduler &s, Fiber &f, bool) { swapcontext(&f.ctx, &s.main); }
#endif

void fiber_entry() {
  Scheduler &s = *g_sched;
#if BP_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
  (*s.body)();
  Fiber &f = s.fibers[(size_t)s.current];
  f.state = DONE;
  leave_fiber(s, f, true);  // never resumed
}

// A fresh context at the start of fiber_entry. Kept out of launch():
// getcontext returns twice, as setjmp does, which would put launch's loop
// variables at risk.
__attribute__((noinline)) void start_fiber(Fiber &f, char *stack) {
  f.stack = stack;
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry, 0);
  f.state = RUNNABLE;
  f.pred = 0;
}

}  // namespace

int sync_block_count(int pred) {
  g_barrier_seen = true;
  Scheduler &s = *g_sched;
  Fiber &f = s.fibers[(size_t)s.current];
  f.pred = pred;
  f.state = WAITING;
  leave_fiber(s, f, false);
  return s.barrier_sum;
}

void sync_block() { (void)sync_block_count(0); }

static void run_grid(const config &c, const std::function<void()> &body);
static void run_grid_on_fibers(const config &c, const std::function<void()> &body);

void launch(const config &c, const std::function<void()> &body) {
  stream_op(c.stream, [c, body] { run_grid(c, body); });
}

// Whether a kernel ever reached __syncthreads, per launch site (the type of
// its closure). One that never did runs its threads as plain calls, one
// after another: no fibers, no context switches. The first launch of a site
// always runs on fibers, and a site that uses a barrier stays on them.
std::mutex g_sites_mutex;
std::map<std::type_index, bool> g_site_uses_barrier;

// Kernels keep their shared memory in function-local statics (cuda_emu.h),
// so two host threads must not run grids at the same time.
std::mutex g_grid_mutex;

static void run_grid(const config &c, const std::function<void()> &body) {
  if (g_sched != nullptr) {
    std::fprintf(stderr, "cuda_emu: a launch from inside a kernel is not supported\n");
    std::abort();
  }
  std::lock_guard<std::mutex> grid_lock(g_grid_mutex);
  const std::type_index site(body.target_type());
  bool known = false, barrier = true;
  {
    std::lock_guard<std::mutex> lock(g_sites_mutex);
    auto it = g_site_uses_barrier.find(site);
    if (it != g_site_uses_barrier.end()) {
      known = true;
      barrier = it->second;
    }
  }
  if (known && !barrier) {
    blockDim = c.block;
    gridDim = c.grid;
    const unsigned bx = c.block.x, by = c.block.y, n = bx * by * c.block.z;
    for (unsigned z = 0; z < c.grid.z; ++z)
      for (unsigned y = 0; y < c.grid.y; ++y)
        for (unsigned x = 0; x < c.grid.x; ++x) {
          blockIdx = uint3{x, y, z};
          for (unsigned t = 0; t < n; ++t) {
            threadIdx = uint3{t % bx, (t / bx) % by, t / (bx * by)};
            body();
          }
        }
    return;
  }
  g_barrier_seen = false;
  run_grid_on_fibers(c, body);
  std::lock_guard<std::mutex> lock(g_sites_mutex);
  g_site_uses_barrier[site] = g_barrier_seen;
}

static void run_grid_on_fibers(const config &c, const std::function<void()> &body) {
  const unsigned bx = c.block.x, by = c.block.y, bz = c.block.z;
  const unsigned n = bx * by * bz;
  // Stacks are kept from launch to launch.
  static thread_local std::vector<std::unique_ptr<char[]>> stacks;
  while (stacks.size() < n) stacks.emplace_back(new char[kStackBytes]);
  Scheduler s;
  s.fibers.resize(n);
  s.body = &body;
  g_sched = &s;
  blockDim = c.block;
  gridDim = c.grid;
  for (unsigned z = 0; z < c.grid.z; ++z)
    for (unsigned y = 0; y < c.grid.y; ++y)
      for (unsigned x = 0; x < c.grid.x; ++x) {
        for (unsigned t = 0; t < n; ++t) start_fiber(s.fibers[t], stacks[t].get());
        for (;;) {
          for (unsigned t = 0; t < n; ++t) {
            Fiber &f = s.fibers[t];
            if (f.state != RUNNABLE) continue;
            threadIdx = uint3{t % bx, (t / bx) % by, t / (bx * by)};
            blockIdx = uint3{x, y, z};
            s.current = (int)t;
            enter_fiber(s, f);
          }
          unsigned waiting = 0, sum = 0;
          for (const Fiber &f : s.fibers) {
            waiting += f.state == WAITING;
            sum += f.state == WAITING && f.pred != 0;
          }
          if (waiting == 0) break;  // every thread of the block has finished
          if (waiting != n) {
            std::fprintf(stderr,
                         "cuda_emu: block (%u,%u,%u): %u of %u threads wait at __syncthreads "
                         "while the others have returned (a divergent barrier)\n",
                         x, y, z, waiting, n);
            std::abort();
          }
          s.barrier_sum = (int)sum;
          for (Fiber &f : s.fibers) f.state = RUNNABLE;
        }
      }
  g_sched = nullptr;
}

}  // namespace bp_emu

