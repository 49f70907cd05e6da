// A C++ host of liblatentwatch.so: the header compiles as C++ (extern "C", no C-only constructs) and its calls
// work through RAII wrappers. Run by Tests/CAPITests with the path of a model file.
#include "latentwatch.h"

#include <cstdio>
#include <memory>
#include <vector>

namespace {
struct ModelDeleter {
    void operator()(lw_model *m) const { lw_model_free(m); }
};
using Model = std::unique_ptr<lw_model, ModelDeleter>;
}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    if (lw_abi_version() != LW_ABI_VERSION) return 1;
    lw_model *raw = nullptr;
    if (lw_model_load(argv[1], &raw) != LW_OK) {
        std::fprintf(stderr, "%s\n", lw_last_error());
        return 1;
    }
    Model model(raw);
    lw_model_info info{};
    info.struct_size = sizeof info;
    if (lw_model_get_info(model.get(), &info) != LW_OK) return 1;
    std::vector<float> x(info.input_count, 0.0f);
    lw_scores s{};
    s.struct_size = sizeof s;
    if (lw_model_score(model.get(), x.data(), x.size(), &s) != LW_OK) return 1;
    std::printf("layer %s family %s surprise %g\n", info.layer, info.family, s.surprise);
    return 0;
}
