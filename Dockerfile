# bucket-csi: one image for the controller, the node plugin and the FUSE
# servers. Static binary on a small Debian base that has what FUSE needs.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bucket-csi ./cmd/bucket-csi \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/bucket-csi-mounter ./cmd/bucket-csi-mounter

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends fuse3 ca-certificates util-linux e2fsprogs \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/bucket-csi /out/bucket-csi-mounter /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/bucket-csi"]
