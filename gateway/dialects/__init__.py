"""One module per documented JSON API (../shared/seeds). A dialect only translates: JSON in, gRPC calls
through `gateway.mesh`, JSON out, errors rendered in its own format."""
