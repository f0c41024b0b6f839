import { defineConfig } from "vite";

// The generated code lives outside web/ (../gen/ts). `dedupe` makes its bare imports of
// @bufbuild/protobuf resolve to web/node_modules, so there is exactly one runtime copy.
export default defineConfig({
  base: "./",
  resolve: { dedupe: ["@bufbuild/protobuf"] },
  server: { fs: { allow: [".."] } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 1500,
  },
});
