"""Generated from protos/tokend/v1/tokend.proto by scripts/gen-stubs; do not edit."""
