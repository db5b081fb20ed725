// cuda_emu.h: run fastconv's CUDA kernels on the CPU, for tests on machines without a GPU.
//
// The fake `cupy` of fakecupy/cupy/__init__.py pastes a kernel file's text (exactly what
// fastconv._gpu hands to cupy.RawModule) after `#include "cuda_emu.h"` and compiles it with
// g++ -std=c++17 (the standard fastconv gives NVRTC) into a shared library with one
// `launch_<i>` entry point per name expression.
//
// Execution model
//   * One OS thread does everything. Each CUDA thread of a block is a fiber (ucontext) with its
//     own stack; `__syncthreads()` switches back to a scheduler, which resumes the block's
//     fibers one after another until every one of them is parked at the barrier (or has
//     returned). So no machine is ever flooded with threads, and every run is deterministic.
//   * Fibers run in threadIdx order between the first and second barrier, in reverse order
//     between the second and third, and so on. A thread thus runs as far as it can before the
//     next one starts: a missing barrier between a shared-memory write and a read of another
//     thread's slot reads stale data in one of the two orders, instead of "usually working".
//   * Blocks run one at a time, in reverse order of their linear index (x fastest), so a
//     kernel that silently relies on blocks running in launch order sees unwritten output.
//   * `__shared__` is `static`: fine, since only one block is ever live.
//   * Checked, returning an error (the Python side raises): the number and C++ types of the
//     launch arguments (size, integer / floating / pointer, and the element type pointed to),
//     CUDA's limits on the launch configuration, and that every thread of a block reaches the
//     same `__syncthreads()` (same source line) the same number of times: a barrier in
//     divergent code, or a thread returning while others wait at a barrier, is an error here
//     (undefined behaviour, usually a hang or garbage, on a GPU); and that every operand of
//     the tensor-core product mma_tf32_16x8x8 is a TF32 value (a missed conversion; see there).
//
// What passing under this emulator does NOT prove
//   * No warps: there is no lock-step execution, no warp shuffles/votes (the kernels use none),
//     no bank conflicts, coalescing or occupancy: nothing here says anything about speed. The
//     one warp-collective operation, the TF32 tensor-core product mma_tf32_16x8x8 (inline PTX
//     mma.sync.m16n8k8 on a GPU, fastconv/_backend/gpu/cuda/igemm_mma.cuh), is emulated as a rendezvous
//     of the whole block (so the kernels must call it block-uniformly, which they do): every
//     thread deposits its fragments, and once all have, each computes its own result from its
//     warp's deposits, with the lane layout of the PTX ISA restated in that header. Products of
//     TF32 values are exact in float; the sum is taken in float in k order (a tensor core's
//     internal order and rounding are unspecified: compare with tolerances).
//   * Blocks never run concurrently, so there are no races between blocks and no memory-ordering
//     questions at all (atomicAdd is a plain read-modify-write here, never contended); a kernel
//     relying on the order of another block's global writes without a grid-wide sync goes
//     unnoticed unless the reversed block order happens to expose it.
//   * Threads of a block never interleave between two barriers: each runs alone to its next
//     barrier. So two threads updating one location without an atomic, or any other race
//     inside a barrier interval, is not seen; only missing barriers are (see above).
//   * Arithmetic is the host's: g++ without -ffast-math, IEEE float/double, glibc's expf/logf
//     rather than CUDA's (a few ulp apart); no FMA contraction unless the host compiler picks
//     it. Compare results with tolerances, not bitwise.
//   * It is g++ that parses the code, not NVRTC: code that NVRTC rejects (or a device-only
//     builtin missing below) is the business of tests/test_gpu_compile.py and real GPU runs.
//   * Out-of-bounds accesses are caught only as far as the caller arranges it (the fake cupy
//     puts a guard page after every array; tests/test_gpu_emulated.py adds
//     -fsanitize=undefined when available); a fiber overflowing its 256 KiB stack is not.
#pragma once

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <cstddef>
#include <initializer_list>
#include <mutex>
#include <type_traits>
#include <utility>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace emu {
inline dim3 thread_idx, block_idx, block_dim, grid_dim;
}  // namespace emu

// The CUDA built-in variables, read-only in kernel code.
#define threadIdx (static_cast<const dim3&>(::emu::thread_idx))
#define blockIdx (static_cast<const dim3&>(::emu::block_idx))
#define blockDim (static_cast<const dim3&>(::emu::block_dim))
#define gridDim (static_cast<const dim3&>(::emu::grid_dim))

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// CUDA's vector types (the kernels load shared memory 128 bits at a time through them).
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) double2 {
    double x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

inline float __uint_as_float(unsigned v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}
inline unsigned __float_as_uint(float v) {
    unsigned u;
    memcpy(&u, &v, sizeof u);
    return u;
}
inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}
inline double __longlong_as_double(long long v) {
    double f;
    memcpy(&f, &v, sizeof f);
    return f;
}
// Single OS thread, blocks one at a time: a plain read-modify-write is atomic here.
template <typename T>
inline T atomicAdd(T* p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
inline int atomicExch(int* p, int v) {
    const int old = *p;
    *p = v;
    return old;
}

namespace emu {

enum FiberState { READY, AT_BARRIER, DONE };

struct Fiber {
    ucontext_t ctx;
    dim3 idx;
    FiberState state;
    int line;  // source line of the __syncthreads it waits at
};

constexpr std::size_t STACK_BYTES = 256 * 1024;
constexpr unsigned MAX_THREADS = 1024;

inline ucontext_t scheduler;
inline Fiber fibers[MAX_THREADS];
inline char* stacks = nullptr;  // stack_count stacks of STACK_BYTES (grown on demand)
inline unsigned stack_count = 0;
inline unsigned current = 0;
inline void (*body)(void*) = nullptr;
inline void* body_arg = nullptr;
inline std::mutex launch_mutex;  // the state above is per shared library: one launch at a time

// mma_tf32_16x8x8's deposits: two sets used alternately (see mma_rendezvous), per thread.
struct MmaDeposit {
    unsigned a[4], b[2];
};
inline MmaDeposit mma_deposits[2][MAX_THREADS];
inline unsigned mma_calls[MAX_THREADS];
// A harness that calls device code outside any launch (tests/gpu_emulation/bank_probe.cpp)
// sets this: mma_tf32_16x8x8 then only hands it the calling thread's operands.
inline void (*mma_probe)(const unsigned (&a)[4], const unsigned (&b)[2]) = nullptr;
// Operands handed to mma_tf32_16x8x8 that are not TF32 values, in this launch (see there).
inline unsigned long long mma_raw_operands = 0;
inline unsigned mma_raw_thread = 0, mma_raw_bits = 0;
constexpr int MMA_LINE = -1;  // the "barrier line" the rendezvous parks at

inline void syncthreads(int line) {
    Fiber& f = fibers[current];
    f.state = AT_BARRIER;
    f.line = line;
    swapcontext(&f.ctx, &scheduler);
}

inline void fiber_main() {
    body(body_arg);
    fibers[current].state = DONE;
    // returning continues at uc_link == &scheduler
}

// Runs one block: returns 0, or a negative code after printing what went wrong.
inline int run_block(unsigned nt) {
    for (unsigned t = 0; t < nt; ++t) {
        Fiber& f = fibers[t];
        f.idx = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
        f.state = READY;
        f.line = 0;
        mma_calls[t] = 0;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks + (std::size_t)t * STACK_BYTES;
        f.ctx.uc_stack.ss_size = STACK_BYTES;
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    for (unsigned phase = 0;; ++phase) {
        for (unsigned i = 0; i < nt; ++i) {
            const unsigned t = (phase % 2 == 0) ? i : nt - 1 - i;
            if (fibers[t].state != READY) continue;
            current = t;
            thread_idx = fibers[t].idx;
            swapcontext(&scheduler, &fibers[t].ctx);
        }
        unsigned waiting = 0, done = 0;
        for (unsigned t = 0; t < nt; ++t) {
            waiting += fibers[t].state == AT_BARRIER;
            done += fibers[t].state == DONE;
        }
        if (done == nt) return 0;
        if (waiting != nt) {
            fprintf(stderr,
                    "EMU: block (%u,%u,%u): %u threads wait at __syncthreads (line %d) while %u "
                    "have returned: barrier in divergent code\n",
                    block_idx.x, block_idx.y, block_idx.z, waiting, fibers[0].line, done);
            return -1;
        }
        for (unsigned t = 0; t < nt; ++t) {
            if (fibers[t].line != fibers[0].line) {
                fprintf(stderr,
                        "EMU: block (%u,%u,%u): thread %u waits at the __syncthreads of line %d, "
                        "thread 0 at line %d: barrier in divergent code\n",
                        block_idx.x, block_idx.y, block_idx.z, t, fibers[t].line,
                        fibers[0].line);
                return -1;
            }
            fibers[t].state = READY;
        }
    }
}

// Type code of a kernel parameter, matched against the code the Python side computes for the
// value it passes: 10 + size for integers, 20 + size for floating point, 100 + the code of the
// element type for pointers (so a float* fed a double array or an int64 array is caught).
template <typename T>
constexpr int type_code() {
    if constexpr (std::is_pointer_v<T>) {
        return 100 + type_code<std::remove_cv_t<std::remove_pointer_t<T>>>();
    } else if constexpr (std::is_floating_point_v<T>) {
        return 20 + (int)sizeof(T);
    } else if constexpr (std::is_integral_v<T>) {
        return 10 + (int)sizeof(T);
    } else {
        return 0;
    }
}

template <typename... Args, std::size_t... I>
void call(void (*k)(Args...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(args[I])...);
}

template <typename... Args>
struct Bound {
    void (*k)(Args...);
    void** args;
    static void run(void* self) {
        Bound* b = static_cast<Bound*>(self);
        call(b->k, b->args, std::index_sequence_for<Args...>{});
    }
};

// Launch `k` on grid (gx, gy, gz) x block (bx, by, bz). args[i] points to the value of
// parameter i, codes[i] is its type_code as the caller sees it. Returns 0 or an error code.
template <typename... Args>
int launch(const char* name, void (*k)(Args...), unsigned gx, unsigned gy, unsigned gz,
           unsigned bx, unsigned by, unsigned bz, void** args, int nargs, const int* codes) {
    constexpr int n = (int)sizeof...(Args);
    const int expect[n + 1] = {type_code<Args>()..., 0};
    if (nargs != n) {
        fprintf(stderr, "EMU: %s launched with %d arguments, the kernel takes %d\n", name, nargs,
                n);
        return 1;
    }
    for (int i = 0; i < n; ++i) {
        if (expect[i] != codes[i]) {
            fprintf(stderr,
                    "EMU: %s argument %d has type code %d, the kernel parameter wants %d "
                    "(10+size: integer, 20+size: floating point, 100+: pointer to)\n",
                    name, i, codes[i], expect[i]);
            return 2;
        }
    }
    const unsigned long long nt = (unsigned long long)bx * by * bz;
    if (gx < 1 || gy < 1 || gz < 1 || nt < 1 || nt > MAX_THREADS || bz > 64 || gy > 65535 ||
        gz > 65535 || gx > 2147483647u) {
        fprintf(stderr, "EMU: %s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)\n",
                name, gx, gy, gz, bx, by, bz);
        return 3;
    }
    std::lock_guard<std::mutex> lock(launch_mutex);
    if (stack_count < nt) {
        free(stacks);
        stacks = static_cast<char*>(malloc(nt * STACK_BYTES));
        stack_count = stacks == nullptr ? 0 : (unsigned)nt;
        if (stacks == nullptr) {
            fprintf(stderr, "EMU: %s: no memory for %llu fiber stacks\n", name, nt);
            return 4;
        }
    }
    mma_raw_operands = 0;
    Bound<Args...> bound{k, args};
    body = &Bound<Args...>::run;
    body_arg = &bound;
    grid_dim = {gx, gy, gz};
    block_dim = {bx, by, bz};
    const unsigned long long blocks = (unsigned long long)gx * gy * gz;
    for (unsigned long long b = blocks; b-- > 0;) {  // reverse launch order
        block_idx = {(unsigned)(b % gx), (unsigned)((b / gx) % gy), (unsigned)(b / gx / gy)};
        if (run_block((unsigned)nt) != 0) {
            fprintf(stderr, "EMU: in kernel %s\n", name);
            return 5;
        }
        if (mma_raw_operands != 0) {
            fprintf(stderr,
                    "EMU: %s, block (%u,%u,%u): %llu mma_tf32_16x8x8 operands are not TF32 "
                    "values (low 13 bits set; thread %u passed 0x%08x): a missed "
                    "cvt.rna.tf32.f32\n",
                    name, block_idx.x, block_idx.y, block_idx.z, mma_raw_operands,
                    mma_raw_thread, mma_raw_bits);
            return 6;
        }
    }
    return 0;
}

}  // namespace emu

#define __syncthreads() ::emu::syncthreads(__LINE__)

// ------------------------------------------------------------------ TF32 tensor-core products
// fastconv/_backend/gpu/cuda/igemm_mma.cuh uses these instead of its inline PTX when FASTCONV_EMULATOR is
// defined.
#define FASTCONV_EMULATOR 1

// cvt.rna.tf32.f32: round to the 10-bit mantissa of TF32, to nearest, ties away from zero (add
// half a unit of the 13 dropped bits to the magnitude, then cut them); inf stays inf, NaN stays
// NaN, a value rounding past the largest TF32 becomes inf.
inline unsigned tf32_bits(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u)  // inf or NaN: keep (a NaN keeps a mantissa bit)
        return (u & 0x007fffffu) ? (u | 0x00400000u) & 0xffffe000u : u;
    return (u + 0x1000u) & 0xffffe000u;
}

// d += A (16x8) * B (8x8) for the warp of the calling thread; fragments as mma.m16n8k8 .tf32:
// g = lane / 4, t = lane % 4; a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];
// b0 = B[t][g], b1 = B[t+4][g]; d0 = D[g][2t], d1 = D[g][2t+1], d2 = D[g+8][2t], d3 = D[g+8][2t+1].
// Every operand must be a TF32 value, a float whose low 13 mantissa bits are zero (what
// tf32_bits / cvt.rna.tf32.f32 returns): the kernels convert each value once, when they store
// it to shared memory (igemm_mma.cuh), and a tensor core does not round what it is given (the
// bits below TF32's mantissa are not part of a .tf32 operand), so a value that missed the
// conversion would be multiplied without the round-to-nearest the error bounds assume. Such an
// operand fails the launch here (the emulator's own check: nothing on a GPU would notice).
inline void mma_tf32_16x8x8(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    using namespace ::emu;
    if (mma_probe != nullptr) return mma_probe(a, b);
    const unsigned me = current;
    for (unsigned v : {a[0], a[1], a[2], a[3], b[0], b[1]}) {
        if ((v & 0x1fffu) != 0 && mma_raw_operands++ == 0) {
            mma_raw_thread = me;
            mma_raw_bits = v;
        }
    }
    MmaDeposit* set = mma_deposits[mma_calls[me]++ & 1];
    for (int q = 0; q < 4; ++q) set[me].a[q] = a[q];
    for (int q = 0; q < 2; ++q) set[me].b[q] = b[q];
    // Everyone deposits before anyone reads. The sets alternate, so a thread's next deposit
    // cannot overwrite one that another thread has still to read: that one reads this set
    // before it reaches the next rendezvous, which this thread's next-but-one deposit follows.
    syncthreads(MMA_LINE);
    const unsigned warp = me / 32 * 32, g = (me % 32) / 4, t = me % 4;
    auto A = [&](unsigned r, unsigned k) {  // lane (r % 8) * 4 + k % 4, register by halves
        return __uint_as_float(set[warp + (r % 8) * 4 + k % 4].a[(r / 8) + 2 * (k / 4)]);
    };
    auto B = [&](unsigned k, unsigned c) {
        return __uint_as_float(set[warp + c * 4 + k % 4].b[k / 4]);
    };
    for (int q = 0; q < 4; ++q) {
        const unsigned r = g + 8 * (q / 2), c = 2 * t + q % 2;
        float sum = 0.0f;
        for (unsigned k = 0; k < 8; ++k) sum += A(r, k) * B(k, c);
        d[q] += sum;
    }
}
