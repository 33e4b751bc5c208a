// JPEG and PNG decoding to 8-bit RGB with libjpeg-turbo and libpng. These need setjmp/longjmp for
// error recovery, which Swift cannot do, hence this small C target.
#ifndef SQUINT_IMAGEIO_H
#define SQUINT_IMAGEIO_H
#include <stddef.h>
#include <stdint.h>
#endif
