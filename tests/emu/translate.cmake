# translate.cmake - rewrites a kernel source for the CPU emulation
# (cuda_emu.h): every `kernel<<<cfg>>>(` becomes `BP_EMU_LAUNCH((cfg), (kernel), `;
# `kernel` may carry template arguments (`k<ACT, 4>`), and clang-format may
# break the line before `<<<`. The kernel goes in parentheses: a template
# argument list's comma would split the macro's arguments.
#   cmake -DIN=kernels/x.cu -DOUT=build/emu/x.cc -P translate.cmake
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*(<[A-Za-z_0-9, ]+>)?)[ \n]*<<<([^>]*)>>>\\(" "BP_EMU_LAUNCH((\\3), (\\1), "
       src "${src}")
if(src MATCHES "<<<")
  message(FATAL_ERROR "translate.cmake: a launch in ${IN} was not rewritten")
endif()
file(WRITE "${OUT}" "#include \"cuda_emu.h\"\n#line 1 \"${IN}\"\n${src}")
