// trtq LogQuant as a TensorRT plugin: IPluginV3 (TensorRT 10.0 and later, 11.x included), op
// "LogQuant", version "1", namespace "trtq", fields bits (int), tau (int), scale (float). The
// arithmetic is the CUDA kernel of logquant_kernel.cu, unchanged (see logquant.h).
//
// No TensorRT 8.x (IPluginV2DynamicExt) version exists on purpose: JetPack 5 (TensorRT 8.5) and
// JetPack 6.0 (TensorRT 8.6) users export with `--logquant onnx`, the standard-op form, which
// every TensorRT version parses without a plugin.
//
// Registration. One source, two libraries (see CMakeLists.txt):
//   liblogquant_trt.so          registers its creator when the library is opened (a static
//                               registrar, as REGISTER_TENSORRT_PLUGIN does): for
//                               `trtexec --staticPlugins=...`, ctypes.CDLL(..., RTLD_GLOBAL) and
//                               programs that link the library.
//   liblogquant_trt_dynamic.so  registers nothing by itself and exports the entry points of a
//                               TensorRT 10.x/11.x "plugin shared library" instead,
//                                 extern "C" void setLoggerFinder(ILoggerFinder*);
//                                 extern "C" IPluginCreatorInterface* const* getCreators(int32_t&);
//                               for IPluginRegistry::loadLibrary (Python
//                               `get_plugin_registry().load_library`), `trtexec --dynamicPlugins`
//                               and `--setPluginsToSerialize`.
// Both in one library would register the creator twice under loadLibrary (static
// initialisers run inside its dlopen, then TensorRT registers what getCreators returns), and
// loadLibrary "will fail and return nullptr if any of the plugins are already registered"
// (IPluginRegistry::loadLibrary, NvInferRuntimeCommon.h; TensorRT-RTX 1.7 refuses such a
// library: "Cannot register the library as plugin creator of LogQuant exists already"). Define
// TRTQ_LOGQUANT_STATIC_REGISTRATION=0 for the dynamic library.
//
// The ONNX parser finds the creator by the node's op_type, its string attribute
// `plugin_version` (default "1") and its string attribute `plugin_namespace` (default ""), not
// by the node's domain; a node for this plugin therefore needs plugin_namespace="trtq".
#include "logquant.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#ifndef TRTQ_LOGQUANT_STATIC_REGISTRATION
#define TRTQ_LOGQUANT_STATIC_REGISTRATION 1
#endif

using namespace nvinfer1;

namespace trtq {
namespace {

constexpr char kPluginName[] = "LogQuant";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "trtq";
constexpr char kFieldBits[] = "bits";
constexpr char kFieldTau[] = "tau";
constexpr char kFieldScale[] = "scale";

// The logger TensorRT hands a dynamically loaded library (setLoggerFinder); null otherwise.
class LoggerFinderSlot {
public:
    void set(ILoggerFinder* finder) {
        std::lock_guard<std::mutex> lock(mMutex);
        if (mFinder == nullptr) mFinder = finder;
    }
    ILogger* logger() {
        std::lock_guard<std::mutex> lock(mMutex);
        return mFinder != nullptr ? mFinder->findLogger() : nullptr;
    }

private:
    std::mutex mMutex;
    ILoggerFinder* mFinder{nullptr};
};

LoggerFinderSlot& loggerFinder() {
    static LoggerFinderSlot slot;
    return slot;
}

// Reports to the error recorder the application set on the plugin registry (static library),
// and to the logger of the builder or runtime that called the plugin (dynamic library, through
// setLoggerFinder); to stderr when there is no such logger. TensorRT's global getLogger() is
// not used: it is not the application's logger (TensorRT-RTX 1.7 drops what it is given).
void reportError(ErrorCode code, std::string const& message) noexcept {
    try {
        std::string const text = std::string("trtq::LogQuant: ") + message;
#if TRTQ_LOGQUANT_STATIC_REGISTRATION
        if (IErrorRecorder* recorder = getPluginRegistry()->getErrorRecorder()) {
            recorder->reportError(code, text.c_str());
        }
#else
        static_cast<void>(code);
#endif
        if (ILogger* logger = loggerFinder().logger()) {
            logger->log(ILogger::Severity::kERROR, text.c_str());
        } else {
            std::fprintf(stderr, "[E] %s\n", text.c_str());
        }
    } catch (...) {
        std::fprintf(stderr, "[E] trtq::LogQuant: error while reporting an error\n");
    }
}

int64_t volume(Dims const& dims) {
    int64_t n = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i) {
        if (dims.d[i] < 0) return -1;
        n *= dims.d[i];
    }
    return n;
}

bool isSupportedType(DataType type) {
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

// The checked parameters of one LogQuant node, or an explanation of what is wrong with them.
bool makeParams(int32_t bits, int32_t tau, float scale, TrtqLogQuantParams& params,
                std::string& why) {
    std::ostringstream out;
    if (bits < 2 || bits > 8) out << " bits=" << bits << " (need 2..8)";
    if (!(tau == 1 || tau == 2 || tau == 4)) out << " tau=" << tau << " (need 1, 2 or 4)";
    if (!std::isfinite(scale) || !(scale > 0.0f)) out << " scale=" << scale << " (need finite > 0)";
    why = out.str();
    if (!why.empty()) return false;
    if (trtq_logquant_params(bits, tau, scale, &params) != 0) {
        why = " rejected by trtq_logquant_params";
        return false;
    }
    return true;
}

class LogQuantPlugin : public IPluginV3,
                       public IPluginV3OneCore,
                       public IPluginV3OneBuild,
                       public IPluginV3OneRuntime {
public:
    explicit LogQuantPlugin(TrtqLogQuantParams const& params) : mParams(params) { initFields(); }
    LogQuantPlugin(LogQuantPlugin const& other) : mParams(other.mParams) { initFields(); }
    LogQuantPlugin& operator=(LogQuantPlugin const&) = delete;
    ~LogQuantPlugin() override = default;

    // IPluginV3
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        switch (type) {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }
    IPluginV3* clone() noexcept override {
        try {
            return new LogQuantPlugin(*this);
        } catch (std::exception const& e) {
            reportError(ErrorCode::kINTERNAL_ERROR, std::string("clone failed: ") + e.what());
        }
        return nullptr;
    }

    // IPluginV3OneCore
    AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
    AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // IPluginV3OneBuild: one input, one output of the same shape and type (FP32 or FP16, LINEAR)
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
                               DataType const* inputTypes, int32_t nbInputs) const noexcept override {
        if (nbInputs != 1 || nbOutputs != 1) return -1;
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
                            int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
                            IExprBuilder& exprBuilder) noexcept override {
        if (nbInputs != 1 || nbOutputs != 1) {
            reportError(ErrorCode::kINVALID_ARGUMENT, "takes one input and gives one output");
            return -1;
        }
        outputs[0] = inputs[0];  // dynamic dimensions stay symbolic
        return 0;
    }
    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                   int32_t nbInputs, int32_t nbOutputs) noexcept override {
        if (nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1) return false;
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR) return false;
        return pos == 0 ? isSupportedType(desc.type) : desc.type == inOut[0].desc.type;
    }
    int32_t configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override {
        if (nbInputs != 1 || nbOutputs != 1 || !isSupportedType(in[0].desc.type) ||
            out[0].desc.type != in[0].desc.type) {
            reportError(ErrorCode::kINVALID_ARGUMENT,
                        "needs one FP32 or FP16 input and an output of the same type");
            return -1;
        }
        return 0;
    }
    size_t getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            DynamicPluginTensorDesc const* outputs,
                            int32_t nbOutputs) const noexcept override {
        return 0;
    }
    char const* getMetadataString() noexcept override { return mMetadata.c_str(); }

    // IPluginV3OneRuntime
    int32_t onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override {
        return nbInputs == 1 && nbOutputs == 1 && isSupportedType(in[0].type) &&
                       out[0].type == in[0].type
                   ? 0
                   : -1;
    }
    int32_t enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override {
        int64_t const n = volume(inputDesc[0].dims);
        if (n < 0) {
            reportError(ErrorCode::kFAILED_EXECUTION, "enqueue got an input with unknown dims");
            return -1;
        }
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[0].type == DataType::kFLOAT) {
            status = trtq_logquant_f32(static_cast<float const*>(inputs[0]),
                                       static_cast<float*>(outputs[0]), n, &mParams, stream);
        } else if (inputDesc[0].type == DataType::kHALF) {
            status = trtq_logquant_f16(static_cast<uint16_t const*>(inputs[0]),
                                       static_cast<uint16_t*>(outputs[0]), n, &mParams, stream);
        } else {
            reportError(ErrorCode::kFAILED_EXECUTION, "enqueue got a type other than FP32/FP16");
            return -1;
        }
        if (status != cudaSuccess) {
            reportError(ErrorCode::kFAILED_EXECUTION,
                        std::string("kernel launch failed: ") + cudaGetErrorName(status) + " (" +
                            cudaGetErrorString(status) + ")");
            return static_cast<int32_t>(status);
        }
        return 0;
    }
    IPluginV3* attachToContext(IPluginResourceContext* context) noexcept override { return clone(); }
    PluginFieldCollection const* getFieldsToSerialize() noexcept override { return &mFieldCollection; }

private:
    void initFields() {
        mFields.clear();
        mFields.emplace_back(kFieldBits, &mParams.bits, PluginFieldType::kINT32, 1);
        mFields.emplace_back(kFieldTau, &mParams.tau, PluginFieldType::kINT32, 1);
        mFields.emplace_back(kFieldScale, &mParams.scale, PluginFieldType::kFLOAT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
        std::ostringstream text;
        text.precision(9);
        text << "bits=" << mParams.bits << " tau=" << mParams.tau << " scale=" << mParams.scale;
        mMetadata = text.str();
    }

    TrtqLogQuantParams mParams{};
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
    std::string mMetadata;
};

// One scalar field as a number; false when its type or length is not a scalar number.
bool readNumber(PluginField const& field, double& value) {
    if (field.data == nullptr || field.length != 1) return false;
    switch (field.type) {
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); return true;
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); return true;
    case PluginFieldType::kINT64:
        value = static_cast<double>(*static_cast<int64_t const*>(field.data));
        return true;
    case PluginFieldType::kFLOAT32: value = *static_cast<float const*>(field.data); return true;
    case PluginFieldType::kFLOAT64: value = *static_cast<double const*>(field.data); return true;
    default: return false;
    }
}

class LogQuantCreator : public IPluginCreatorV3One {
public:
    LogQuantCreator() {
        mFields.emplace_back(kFieldBits, nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back(kFieldTau, nullptr, PluginFieldType::kINT32, 1);
        mFields.emplace_back(kFieldScale, nullptr, PluginFieldType::kFLOAT32, 1);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
    }

    AsciiChar const* getPluginName() const noexcept override { return kPluginName; }
    AsciiChar const* getPluginVersion() const noexcept override { return kPluginVersion; }
    AsciiChar const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }

    IPluginV3* createPlugin(AsciiChar const* name, PluginFieldCollection const* fc,
                            TensorRTPhase phase) noexcept override {
        try {
            std::string const node = name != nullptr ? name : "?";
            double values[3] = {0.0, 0.0, 0.0};
            bool seen[3] = {false, false, false};
            char const* const names[3] = {kFieldBits, kFieldTau, kFieldScale};
            for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
                PluginField const& field = fc->fields[i];
                for (int32_t k = 0; k < 3; ++k) {
                    if (field.name == nullptr || std::strcmp(field.name, names[k]) != 0) continue;
                    if (!readNumber(field, values[k])) {
                        reportError(ErrorCode::kINVALID_ARGUMENT,
                                    "node '" + node + "': field '" + names[k] +
                                        "' must be one number (int for bits/tau, float for scale)");
                        return nullptr;
                    }
                    seen[k] = true;
                }
            }
            for (int32_t k = 0; k < 3; ++k) {
                if (!seen[k]) {
                    reportError(ErrorCode::kINVALID_ARGUMENT,
                                "node '" + node + "' lacks field '" + names[k] +
                                    "'; a LogQuant node needs the attributes bits (int), tau (int) "
                                    "and scale (float): re-export it with trtq");
                    return nullptr;
                }
            }
            int32_t const bits = static_cast<int32_t>(values[0]);
            int32_t const tau = static_cast<int32_t>(values[1]);
            float const scale = static_cast<float>(values[2]);
            TrtqLogQuantParams params{};
            std::string why;
            if (values[0] != bits || values[1] != tau || !makeParams(bits, tau, scale, params, why)) {
                reportError(ErrorCode::kINVALID_ARGUMENT,
                            "node '" + node + "' has invalid fields:" +
                                (why.empty() ? std::string(" bits/tau must be integers") : why) +
                                "; recalibrate or re-export it with trtq");
                return nullptr;
            }
            return new LogQuantPlugin(params);
        } catch (std::exception const& e) {
            reportError(ErrorCode::kINTERNAL_ERROR, std::string("createPlugin failed: ") + e.what());
        }
        return nullptr;
    }

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mFieldCollection{};
};

#if TRTQ_LOGQUANT_STATIC_REGISTRATION
// What REGISTER_TENSORRT_PLUGIN(LogQuantCreator) does, except for the namespace: the macro
// passes "" to registerCreator, and a creator whose own namespace is not "" is then found under
// neither name (seen with TensorRT-RTX 1.7's registry: "found is in namespace: trtq, not in
// namespace: "). TensorRT's own initLibNvInferPlugins passes the creator's namespace, as here.
class StaticRegistrar {
public:
    StaticRegistrar() {
        if (!getPluginRegistry()->registerCreator(mCreator, kPluginNamespace)) {
            reportError(ErrorCode::kINVALID_STATE,
                        "could not register the creator trtq::LogQuant version 1 (is another "
                        "build of this plugin already loaded?)");
        }
    }

private:
    LogQuantCreator mCreator;
};
StaticRegistrar gStaticRegistrar;
#endif

}  // namespace
}  // namespace trtq

#if !TRTQ_LOGQUANT_STATIC_REGISTRATION
extern "C" __attribute__((visibility("default"))) void setLoggerFinder(ILoggerFinder* finder) {
    trtq::loggerFinder().set(finder);
}

extern "C" __attribute__((visibility("default"))) IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators) {
    static trtq::LogQuantCreator creator;
    static IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}
#endif
