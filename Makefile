# ferry: meson + ninja behind make. `make check` is what CI runs.
BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON      ?= meson
NINJA      ?= ninja

.PHONY: all check check-plain check-asan demo bench clean

all: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

# First configure: install whatever Debian packages are missing.
$(BUILD)/build.ninja:
	@sh tools/install-deps.sh
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

$(ASAN_BUILD)/build.ninja:
	@sh tools/install-deps.sh
	$(MESON) setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

# Every test twice: an optimised build, then the whole suite under ASan+UBSan.
check: check-plain check-asan

check-plain: all
	$(MESON) test -C $(BUILD) --print-errorlogs --num-processes 2

check-asan: $(ASAN_BUILD)/build.ninja
	$(NINJA) -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	$(MESON) test -C $(ASAN_BUILD) --print-errorlogs --num-processes 2 \
		--timeout-multiplier 3

demo: all
	@sh tools/demo.sh $(BUILD)

bench: all
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
