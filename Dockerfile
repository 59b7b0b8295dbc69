# roamfs test image: Node 20 on Debian 12 with libfuse. It installs exactly as the README does
# (scripts/setup.sh) and runs the test suite (scripts/test.sh). FUSE needs the device and
# SYS_ADMIN:
#   docker build -t roamfs .
#   docker run --rm --device /dev/fuse --cap-add SYS_ADMIN --security-opt apparmor:unconfined roamfs
FROM node:20-bookworm
WORKDIR /src/roamfs
COPY . .
RUN scripts/setup.sh
CMD ["scripts/test.sh"]
