/*
 * s3_xml.h -- the XML documents of the S3 API, read with libexpat.
 *
 * S3 answers in XML: ListObjectsV2 pages (ListBucketResult), InitiateMultipartUpload
 * (UploadId), CompleteMultipartUpload and CopyObject results, DeleteObjects results,
 * and <Error> documents with Code and Message. Every function here takes a whole
 * response body (at most one page of a listing: storage_s3.c pages with continuation
 * tokens) and never reports: it returns -1 with a short reason in why (when not NULL:
 * expat's message and the line, "a DOCTYPE", "out of memory") and the caller reports in
 * its own context. Element names are matched by local name (any namespace; S3's is
 * http://s3.amazonaws.com/doc/2006-03-01/); entities and character references are
 * decoded by expat; a DOCTYPE is refused (S3 never sends one, and its entity
 * definitions are the only way to an entity bomb). Leading whitespace before the
 * document is skipped (AWS may pad a slow CompleteMultipartUpload answer).
 */
#ifndef RAGSAFE_S3_XML_H
#define RAGSAFE_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#define S3_XML_WHY 160 /* a why buffer large enough for every reason */

/*
 * s3_xml_find -- the text of the first element at path, "/"-separated local names from
 * the root ("Error/Code", "InitiateMultipartUploadResult/UploadId"; a path of one name
 * asks what the root is). *text: malloc'd, decoded, the element's own character data
 * (no child's). 0 found, 1 not there (*text NULL), -1 malformed or out of memory.
 */
int s3_xml_find(const char *xml, size_t len, const char *path, char **text, char *why,
                size_t whylen);

/* s3_xml_error -- Error/Code and Error/Message of an error document (either may come
 * back NULL when absent). 0 (the body is XML) | -1 (not XML: both NULL). */
int s3_xml_error(const char *xml, size_t len, char **code, char **message);

typedef struct s3_xml_object {
    char *key;      /* decoded */
    int64_t size;   /* Size, 0 when absent */
    int64_t mtime;  /* LastModified in Unix seconds, 0 when absent or unreadable */
} s3_xml_object;

typedef struct s3_xml_listing {
    s3_xml_object *objects; /* the page's Contents, in order */
    size_t n, cap;
    int truncated;          /* IsTruncated is "true" */
    char *next_token;       /* NextContinuationToken, NULL when absent */
} s3_xml_listing;

/*
 * s3_xml_listing_parse -- one ListObjectsV2 page (root ListBucketResult) into *out
 * (zeroed first; free with s3_xml_listing_free, also after -1). -1 when malformed: not
 * XML, another root, a Contents without a Key, a Size that is not a number.
 */
int s3_xml_listing_parse(const char *xml, size_t len, s3_xml_listing *out, char *why,
                         size_t whylen);
void s3_xml_listing_free(s3_xml_listing *l);

#endif
