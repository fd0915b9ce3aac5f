# Turns one file (IN) into a NUL-terminated C array named SYMBOL in OUT, so the binary serves
# it without reading the source tree (the dashboard page).
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
set(body "/* generated from ${IN} by cmake/embed_file.cmake: do not edit */\nconst char ${SYMBOL}[] = {${hex} 0};\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
