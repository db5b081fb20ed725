// bank_probe.cpp: which shared-memory word each lane of a warp touches, in every store of the
// convolution loaders and every mma fragment load, computed by the kernels' own code (the
// loaders' store(), FmaTile / MmaTile's store_a / store_b and MmaTile's fragment loads),
// compiled as C++ against cuda_emu.h outside any launch. tests/test_gpu_banks.py builds and
// runs it, and counts the bank conflicts of each warp-wide access.
//
// Output: one JSON line per (access, tile, math): {"access", "tile", "math", "groups"}, a group
// being the 32 lanes' word offsets (from the start of As or Bs) of one warp-wide access.
//  * stores: for each warp of the block and each store r of the loader (ra[r] / rb[r]), every
//    lane's value is a marker naming (lane, r), stored by the loader into a buffer of sentinels;
//    where each marker lands is the lane's word. A marker is a float with its low 13 bits zero
//    (a TF32 value: MmaTile stores it unchanged, and its 3xTF32 rest 0 one plane further, the
//    same instruction shifted by a constant).
//  * fragment loads (MmaTile): shared memory holds word i as the bits i << 13 (a TF32 value); the
//    tile's operator() runs for each lane, and mma_probe records the operands of each mma call,
//    i.e. the words its fragment loads read (slots a0..a3 from As, b0, b1 from Bs).
#include "cuda_emu.h"

#include <array>
#include <vector>

#include "conv_tc.cu"

namespace probe {

constexpr unsigned SENTINEL = 0xffffffffu;
constexpr unsigned SHIFT = 13;

using Group = std::array<long, 32>;
std::vector<std::array<unsigned, 6>> calls;  // the probed lane's mma operands, call by call

void record(const unsigned (&a)[4], const unsigned (&b)[2]) {
    calls.push_back({a[0], a[1], a[2], a[3], b[0], b[1]});
}

unsigned bits(float v) { return __float_as_uint(v); }

void emit(const char* access, int bm, int bn, const char* math, const std::vector<Group>& groups) {
    printf("{\"access\": \"%s\", \"tile\": \"%dx%d\", \"math\": \"%s\", \"groups\": [", access, bm,
           bn, math);
    for (size_t i = 0; i < groups.size(); ++i) {
        printf(i ? ", [" : "[");
        for (int lane = 0; lane < 32; ++lane) printf(lane ? ", %ld" : "%ld", groups[i][lane]);
        printf("]");
    }
    printf("]}\n");
}

// Where loader L's stores put each lane's values, per warp and store, under math M.
template <typename L, typename M, int BM, int BN>
void stores(const char* loader, const char* math_name) {
    constexpr int THREADS = TileShape<BM, BN>::THREADS;
    const M math(0);
    std::vector<Group> ga, gb;
    for (int w = 0; w < THREADS / 32; ++w) {
        std::vector<float> As(M::A_BUF, __uint_as_float(SENTINEL));
        std::vector<float> Bs(M::B_BUF, __uint_as_float(SENTINEL));
        for (int lane = 0; lane < 32; ++lane) {
            L ld{};
            ld.tid = w * 32 + lane;
            for (int r = 0; r < L::A_LOADS; ++r)
                ld.ra[r] = __uint_as_float((unsigned)(1 + lane + 32 * r) << SHIFT);
            for (int r = 0; r < L::B_LOADS; ++r)
                ld.rb[r] = __uint_as_float((unsigned)(1 + lane + 32 * r) << SHIFT);
            ld.store(math, As.data(), Bs.data());
        }
        auto collect = [](const std::vector<float>& s, int n, std::vector<Group>& out) {
            std::vector<Group> g(n);
            for (auto& x : g) x.fill(-1);
            for (size_t i = 0; i < s.size(); ++i) {
                const unsigned u = bits(s[i]);
                if (u == SENTINEL || u == 0) continue;  // untouched, or a 3xTF32 rest of 0
                const unsigned id = (u >> SHIFT) - 1;
                g[id / 32][id % 32] = (long)i;
            }
            out.insert(out.end(), g.begin(), g.end());
        };
        collect(As, L::A_LOADS, ga);
        collect(Bs, L::B_LOADS, gb);
    }
    char name[64];
    snprintf(name, sizeof name, "%s store A", loader);
    emit(name, BM, BN, math_name, ga);
    snprintf(name, sizeof name, "%s store B", loader);
    emit(name, BM, BN, math_name, gb);
}

// The words MmaTile's fragment loads read, per warp, mma call and operand slot.
template <int BM, int BN, int PREC>
void fragments(const char* math_name) {
    using M = MmaTile<BM, BN, PREC>;
    constexpr int THREADS = TileShape<BM, BN>::THREADS;
    std::vector<float> As(M::A_BUF), Bs(M::B_BUF);
    for (int i = 0; i < M::A_BUF; ++i) As[i] = __uint_as_float((unsigned)i << SHIFT);
    for (int i = 0; i < M::B_BUF; ++i) Bs[i] = __uint_as_float((unsigned)i << SHIFT);
    std::vector<Group> ga, gb;
    ::emu::mma_probe = record;
    for (int w = 0; w < THREADS / 32; ++w) {
        std::vector<std::vector<std::array<unsigned, 6>>> lanes(32);
        for (int lane = 0; lane < 32; ++lane) {
            calls.clear();
            float acc[4][16] = {};
            const M tile(w * 32 + lane);
            tile(acc, As.data(), Bs.data());
            lanes[lane] = calls;
        }
        for (size_t c = 0; c < lanes[0].size(); ++c) {
            for (int slot = 0; slot < 6; ++slot) {
                Group g;
                for (int lane = 0; lane < 32; ++lane) g[lane] = (long)(lanes[lane][c][slot] >> SHIFT);
                (slot < 4 ? ga : gb).push_back(g);
            }
        }
    }
    ::emu::mma_probe = nullptr;
    emit("mma fragment A", BM, BN, math_name, ga);
    emit("mma fragment B", BM, BN, math_name, gb);
}

template <int BM, int BN>
void tile() {
    stores<ConvLoader<float, BM, BN>, FmaTile<float, BM, BN>, BM, BN>("conv", "fp32");
    stores<WgradLoader<float, BM, BN>, FmaTile<float, BM, BN>, BM, BN>("wgrad", "fp32");
    stores<ConvLoader<float, BM, BN>, MmaTile<BM, BN, PREC_TF32>, BM, BN>("conv", "tf32");
    stores<WgradLoader<float, BM, BN>, MmaTile<BM, BN, PREC_TF32>, BM, BN>("wgrad", "tf32");
    stores<ConvLoader<float, BM, BN>, MmaTile<BM, BN, PREC_3XTF32>, BM, BN>("conv", "3xtf32");
    stores<WgradLoader<float, BM, BN>, MmaTile<BM, BN, PREC_3XTF32>, BM, BN>("wgrad", "3xtf32");
    fragments<BM, BN, PREC_TF32>("tf32");
    fragments<BM, BN, PREC_3XTF32>("3xtf32");
}

}  // namespace probe

int main() {
    // The float tiles of fastconv/_backend/gpu/plans.py (tests/test_gpu_banks.py compares).
    probe::tile<128, 128>();
    probe::tile<64, 128>();
    probe::tile<64, 64>();
    return 0;
}
