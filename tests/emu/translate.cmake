# translate.cmake - rewrites a kernel source for the CPU emulation
# (cuda_emu.h): every `kernel<<<cfg>>>(` becomes `BP_EMU_LAUNCH((cfg), kernel, `.
#   cmake -DIN=kernels/x.cu -DOUT=build/emu/x.cc -P translate.cmake
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_][A-Za-z_0-9]*(<[0-9]+>)?)<<<([^>]*)>>>\\(" "BP_EMU_LAUNCH((\\3), \\1, "
       src "${src}")
if(src MATCHES "<<<")
  message(FATAL_ERROR "translate.cmake: a launch in ${IN} was not rewritten")
endif()
file(WRITE "${OUT}" "#include \"cuda_emu.h\"\n#line 1 \"${IN}\"\n${src}")
