// wasmtime's C API with the series: compile a module, hash the engine,
// detect the hash in the artifact, check the artifact against this engine
// and another, and load and call it. Prints what it found, one fact a
// line; tests/c_api.rs checks the lines.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasm.h>
#include <wasmtime.h>

static const char WAT[] =
    "(module (func (export \"answer\") (result i32) i32.const 42))";

// Prints `error`'s message after `what` and exits, if there is an error.
static void check(const char *what, wasmtime_error_t *error) {
  if (error == NULL)
    return;
  wasm_name_t message;
  wasmtime_error_message(error, &message);
  fprintf(stderr, "%s: %.*s\n", what, (int)message.size, message.data);
  wasm_byte_vec_delete(&message);
  wasmtime_error_delete(error);
  exit(1);
}

// Prints `label`, then `ok` or the error's message on one line.
static void report(const char *label, wasmtime_error_t *error) {
  if (error == NULL) {
    printf("%s: ok\n", label);
    return;
  }
  wasm_name_t message;
  wasmtime_error_message(error, &message);
  // The first line of the message: its context chain follows on others.
  size_t len = message.size;
  const char *newline = memchr(message.data, '\n', len);
  if (newline != NULL)
    len = (size_t)(newline - message.data);
  printf("%s: refused: %.*s\n", label, (int)len, message.data);
  wasm_byte_vec_delete(&message);
  wasmtime_error_delete(error);
}

static void print_hash(const char *label, const uint8_t hash[32]) {
  printf("%s ", label);
  for (int i = 0; i < 32; i++)
    printf("%02x", hash[i]);
  printf("\n");
}

int main(void) {
  wasm_engine_t *engine = wasm_engine_new();
  wasm_config_t *config = wasm_config_new();
  wasmtime_config_consume_fuel_set(config, true);
  wasm_engine_t *fuel_engine = wasm_engine_new_with_config(config);

  uint8_t hash[32];
  check("hash",
        wasmtime_engine_serialization_compatibility_hash(engine, hash));
  print_hash("hash", hash);

  wasm_byte_vec_t wasm;
  check("wat2wasm", wasmtime_wat2wasm(WAT, strlen(WAT), &wasm));
  wasmtime_module_t *module = NULL;
  check("compile", wasmtime_module_new(engine, (const uint8_t *)wasm.data,
                                       wasm.size, &module));
  wasm_byte_vec_t artifact;
  check("serialize", wasmtime_module_serialize(module, &artifact));
  wasmtime_module_delete(module);

  uint8_t detected[32];
  if (wasmtime_engine_detect_serialization_compatibility_hash(
          (const uint8_t *)artifact.data, artifact.size, detected))
    print_hash("detected", detected);
  else
    printf("detected: none\n");
  printf("detected in the wasm: %s\n",
         wasmtime_engine_detect_serialization_compatibility_hash(
             (const uint8_t *)wasm.data, wasm.size, detected)
             ? "a hash"
             : "none");

  report("check", wasmtime_engine_check_compatible_artifact(
                      engine, (const uint8_t *)artifact.data, artifact.size));
  report("check by a fuel engine",
         wasmtime_engine_check_compatible_artifact(
             fuel_engine, (const uint8_t *)artifact.data, artifact.size));
  report("check of the wasm", wasmtime_engine_check_compatible_artifact(
                                  engine, (const uint8_t *)wasm.data,
                                  wasm.size));

  check("deserialize",
        wasmtime_module_deserialize(engine, (const uint8_t *)artifact.data,
                                    artifact.size, &module));
  wasmtime_store_t *store = wasmtime_store_new(engine, NULL, NULL);
  wasmtime_context_t *context = wasmtime_store_context(store);
  wasmtime_instance_t instance;
  wasm_trap_t *trap = NULL;
  check("instantiate",
        wasmtime_instance_new(context, module, NULL, 0, &instance, &trap));
  if (trap != NULL) {
    fprintf(stderr, "instantiation trapped\n");
    return 1;
  }
  wasmtime_extern_t answer;
  if (!wasmtime_instance_export_get(context, &instance, "answer",
                                    strlen("answer"), &answer) ||
      answer.kind != WASMTIME_EXTERN_FUNC) {
    fprintf(stderr, "no function `answer`\n");
    return 1;
  }
  wasmtime_val_t result;
  check("call",
        wasmtime_func_call(context, &answer.of.func, NULL, 0, &result, 1,
                           &trap));
  if (trap != NULL) {
    fprintf(stderr, "the call trapped\n");
    return 1;
  }
  printf("answer() = %d\n", result.of.i32);

  wasmtime_store_delete(store);
  wasmtime_module_delete(module);
  wasm_byte_vec_delete(&artifact);
  wasm_byte_vec_delete(&wasm);
  wasm_engine_delete(fuel_engine);
  wasm_engine_delete(engine);
  return 0;
}
